/**
 * Long-lived tunnels under load: remote assistance's WebSocket (a ping every interval) and vPro's
 * CIRA tunnel (mutual TLS, APF set up, a KEEPALIVE_REQUEST every interval), held until the run
 * ends. Each keep-alive's round trip is measured; a tunnel the far side closes before the end is a
 * drop, and the agent reconnects as the real one does.
 */
import { randomInt } from 'node:crypto';
import type WebSocket from 'ws';
import { ApfClient } from '../agent/apf-client.ts';
import { openWebSocket } from '../agent/wsclient.ts';
import { errorMessage } from '../errors.ts';
import { type AgentContext, countError, LoadError, openSession, pause } from './agents.ts';
import type { SessionPlan } from './model.ts';

type HoldPlan = Extract<SessionPlan, { kind: 'hold' | 'cira' }>;

/** A held tunnel: one keep-alive's round trip in ms (undefined: it closed first), and its end. */
interface Held {
  keepalive(deadlineMs: number): Promise<number | undefined>;
  closed: Promise<void>;
  close(): void;
}

/**
 * A held tunnel's end as a signal, and `onEnd(f)` for one keep-alive: `f` runs when the tunnel
 * ends (at once if it has), and the returned function stops listening. A keep-alive that settles
 * removes its listener, so a tunnel held for hours does not keep one closure per keep-alive it
 * ever sent (the same reason `pause` listens to the run's stop signal).
 */
function tunnelEnd(): { end: () => void; closed: Promise<void>; onEnd: (f: () => void) => () => void } {
  const ended = new AbortController();
  const closed = new Promise<void>((resolve) =>
    ended.signal.addEventListener('abort', () => resolve(), { once: true }),
  );
  return {
    end: () => ended.abort(),
    closed,
    onEnd: (f) => {
      if (ended.signal.aborted) {
        f();
        return () => {};
      }
      ended.signal.addEventListener('abort', f, { once: true });
      return () => ended.signal.removeEventListener('abort', f);
    },
  };
}

/** The AMT port a CIRA session forwards first (as the cira kind does). */
const FORWARDED_PORT = 16993;

async function wsTunnel(ctx: AgentContext, plan: Extract<HoldPlan, { kind: 'hold' }>): Promise<Held> {
  const socket = await openSession(ctx, plan);
  const opened = await openWebSocket(socket, {
    url: `wss://${plan.host}${plan.path}`,
    protocols: [],
    deadlineMs: ctx.deadlines.answerMs,
    deadlineName: 'deadlines.answerMs',
    headers: { 'User-Agent': plan.userAgent },
  });
  if (!opened.ok) throw new LoadError('websocket', `${plan.host}${plan.path}: ${opened.error}`);
  const ws: WebSocket = opened.ws;
  const { end, closed, onEnd } = tunnelEnd();
  ws.once('close', () => end());
  return {
    closed,
    close: () => ws.terminate(),
    keepalive: (deadlineMs) =>
      new Promise((resolve, reject) => {
        const t0 = performance.now();
        const timer = setTimeout(() => {
          ws.off('pong', onPong);
          stopListening();
          reject(new LoadError('keepalive', `no pong within ${deadlineMs} ms (deadlines.requestMs)`));
        }, deadlineMs);
        const onPong = () => {
          clearTimeout(timer);
          stopListening();
          resolve(performance.now() - t0);
        };
        ws.once('pong', onPong);
        const stopListening = onEnd(() => {
          clearTimeout(timer);
          ws.off('pong', onPong);
          resolve(undefined);
        });
        ws.ping();
      }),
  };
}

async function ciraTunnel(ctx: AgentContext, plan: Extract<HoldPlan, { kind: 'cira' }>): Promise<Held> {
  const socket = await openSession(ctx, plan);
  const apf = new ApfClient(socket);
  const { end, closed, onEnd } = tunnelEnd();
  apf.onClosed = () => end();
  const setup = await apf.setUp({
    waitForOriginInfo: false,
    answerMs: ctx.deadlines.answerMs,
    forwardPort: FORWARDED_PORT,
  });
  if (setup.protocolError) {
    socket.destroy();
    throw new LoadError('apf', `${plan.host}:${plan.port}: ${setup.protocolError}`);
  }
  return {
    closed,
    close: () => socket.destroy(),
    keepalive: (deadlineMs) =>
      new Promise((resolve, reject) => {
        const cookie = randomInt(1, 2 ** 31);
        const t0 = performance.now();
        const timer = setTimeout(() => {
          apf.onKeepaliveReply = undefined;
          stopListening();
          reject(
            new LoadError('keepalive', `no KEEPALIVE_REPLY within ${deadlineMs} ms (deadlines.requestMs)`),
          );
        }, deadlineMs);
        apf.onKeepaliveReply = (c) => {
          if (c !== cookie) return;
          clearTimeout(timer);
          apf.onKeepaliveReply = undefined;
          stopListening();
          resolve(performance.now() - t0);
        };
        const stopListening = onEnd(() => {
          clearTimeout(timer);
          resolve(undefined);
        });
        apf.send({ type: 'keepalive-request', cookie });
      }),
  };
}

export async function runHold(ctx: AgentContext, plan: HoldPlan): Promise<void> {
  const everyMs = plan.keepaliveSeconds * 1000 * ctx.timeScale;
  while (!ctx.isStopped()) {
    let held: Held | undefined;
    try {
      held = plan.kind === 'cira' ? await ciraTunnel(ctx, plan) : await wsTunnel(ctx, plan);
      ctx.open.n++;
      let dropped = false;
      try {
        const live = held;
        void live.closed.then(() => {
          dropped = !ctx.isStopped();
        });
        while (!ctx.isStopped() && !dropped) {
          if (!(await pause(ctx, everyMs)) || dropped) break;
          const rtt = await live.keepalive(ctx.deadlines.requestMs);
          if (rtt === undefined) {
            dropped = !ctx.isStopped();
            break;
          }
          ctx.recorder.record('keepalive', rtt);
          ctx.counters.keepalives++;
        }
      } finally {
        ctx.open.n--;
      }
      if (dropped) {
        ctx.counters.drops++;
        countError(
          ctx,
          'tunnel dropped',
          `${plan.host}:${plan.port}: the tunnel closed ${((performance.now() - ctx.t0) / 1000).toFixed(1)} s into the run`,
        );
      }
    } catch (err) {
      if (ctx.isStopped()) return;
      if (err instanceof LoadError) countError(ctx, err.errorClass, err.message);
      else countError(ctx, plan.kind === 'cira' ? 'apf' : 'websocket', `${plan.host}: ${errorMessage(err)}`);
      // an agent waits before it reconnects; so do we (one keep-alive interval)
      if (!(await pause(ctx, everyMs))) return;
    } finally {
      held?.close();
    }
  }
}
