/**
 * The agent's side of a `websocket` kind session (agent/kinds/websocket.ts), run over an
 * established TLS socket: the session plan (length, tick interval, bursts, from the profile's
 * `session` and --time-scale or --idle-seconds), the WebSocket upgrade with the lab session
 * subprotocol, then the ticks: bursts hashed both ways against the origin's acks (lab service
 * ws-session) and pings on the other ticks. It records what happened (SessionRun: bursts, pings,
 * how and when the tunnel ended, or where it stalled) and judges nothing; the kind judges the
 * record.
 */
import { randomBytes } from 'node:crypto';
import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { errorMessage } from '../errors.ts';
import { sha256 } from '../lab/lab.ts';
import { SESSION_SUBPROTOCOL, type SessionAck } from '../lab/services/ws-session.ts';
import { type KindContext, scaledMs, since } from './kinds/types.ts';
import { openWebSocket, type WsOpenResult } from './wsclient.ts';

export const DEFAULTS = { seconds: 60, intervalSeconds: 5, bursts: 4, burstBytes: 16 * 1024 };

export interface SessionPlan {
  /** The session length the agent needs, in real (profile or --idle-seconds) seconds. */
  requiredSeconds: number;
  /** That length as waited here (scaled unless idleSeconds set it). */
  requiredMs: number;
  intervalMs: number;
  ticks: number;
  bursts: number;
  burstBytes: number;
}

export function sessionPlan(ctx: Pick<KindContext, 'exchange' | 'timeScale' | 'idleSeconds'>): SessionPlan {
  const s = ctx.exchange.session ?? {};
  const seconds = s.seconds ?? DEFAULTS.seconds;
  const requiredSeconds = ctx.idleSeconds ?? seconds;
  const requiredMs =
    ctx.idleSeconds !== undefined ? Math.round(ctx.idleSeconds * 1000) : scaledMs(seconds, ctx.timeScale);
  const intervalMs = Math.max(
    10,
    scaledMs(s.intervalSeconds ?? s.keepaliveSeconds ?? DEFAULTS.intervalSeconds, ctx.timeScale),
  );
  return {
    requiredSeconds,
    requiredMs,
    intervalMs,
    ticks: Math.max(1, Math.round(requiredMs / intervalMs)),
    bursts: s.bursts ?? DEFAULTS.bursts,
    burstBytes: s.burstBytes ?? DEFAULTS.burstBytes,
  };
}

/** One upstream burst and the origin's answer to it, as the agent saw them. */
export interface BurstRecord {
  seq: number;
  atMs: number;
  upBytes: number;
  upSha256: string;
  originUpBytes?: number;
  originUpSha256?: string;
  downDeclaredBytes?: number;
  downDeclaredSha256?: string;
  downBytes?: number;
  downSha256?: string;
  roundTripMs?: number;
}

/** How and when the tunnel ended before the session was over. */
export interface Ending {
  atMs: number;
  /** How the tunnel ended, as the agent saw it. */
  how: string;
  /** What the agent was doing when it ended. */
  during: string;
  /** The last step that completed before it. */
  after: string;
  lastTrafficAtMs: number;
  /** The same moment, counted from when the agent started dialling (CONNECT, or the direct route). */
  sinceDialMs: number;
  wsCloseCode?: number;
  wsCloseReason?: string;
  tcpFin?: boolean;
  socketError?: string;
}

/** Everything one session run saw: what judgeSession (kinds/websocket.ts) judges. */
export interface SessionRun {
  plan: SessionPlan;
  route: Record<string, unknown>;
  open: WsOpenResult;
  bursts: BurstRecord[];
  pingsSent: number;
  pongs: number;
  maxPingRttMs: number;
  lastedMs: number;
  completed: boolean;
  ending?: Ending;
  /** A deadline or protocol failure inside a tunnel that stayed open. */
  stalled?: string;
  durationMs: number;
}

class Ended extends Error {}

/** Runs the whole session over an established TLS socket. Destroys the socket before returning. */
export async function runSession(
  ctx: KindContext,
  socket: Socket | TLSSocket,
  route: Record<string, unknown>,
  /** When the agent started dialling (before CONNECT): endings are also timed from it. */
  dialledAt: number,
): Promise<SessionRun> {
  const plan = sessionPlan(ctx);
  const path = ctx.exchange.path ?? '/ws/session';
  const url = `wss://${ctx.host}${ctx.port === 443 ? '' : `:${ctx.port}`}${path}`;
  const t00 = performance.now();
  let tcpFin = false;
  let socketError: string | undefined;
  socket.on('end', () => {
    tcpFin = true;
  });
  socket.on('error', (err) => {
    socketError = (err as NodeJS.ErrnoException).code ?? errorMessage(err);
  });
  const open = await openWebSocket(socket, {
    url,
    protocols: [SESSION_SUBPROTOCOL],
    deadlineMs: ctx.timeouts.answerMs,
    deadlineName: 'timeouts.answerMs',
    ...(ctx.exchange.userAgent ? { headers: { 'User-Agent': ctx.exchange.userAgent } } : {}),
  });
  const run: SessionRun = {
    plan,
    route,
    open,
    bursts: [],
    pingsSent: 0,
    pongs: 0,
    maxPingRttMs: 0,
    lastedMs: 0,
    completed: false,
    durationMs: 0,
  };
  if (!open.ok) {
    socket.destroy();
    run.durationMs = since(t00);
    return run;
  }
  const ws = open.ws;
  const t0 = performance.now();
  const now = () => Math.round(performance.now() - t0);
  let lastTrafficAtMs = 0;
  let during = 'while idle between steps';
  let after = 'the WebSocket upgrade';
  let closeInfo: { code: number; reason: string; atMs: number; sinceDialMs: number } | undefined;
  const inbox: Array<{ data: Buffer; isBinary: boolean }> = [];
  let wake: (() => void) | undefined;
  const poke = () => {
    const w = wake;
    wake = undefined;
    w?.();
  };
  const pongWaiters = new Map<string, () => void>();
  ws.on('message', (data: Buffer, isBinary: boolean) => {
    lastTrafficAtMs = now();
    inbox.push({ data, isBinary });
    poke();
  });
  ws.on('pong', (data: Buffer) => {
    lastTrafficAtMs = now();
    pongWaiters.get(data.toString('latin1'))?.();
  });
  ws.on('error', (err) => {
    socketError ??= errorMessage(err);
  });
  ws.on('close', (code: number, reason: Buffer) => {
    closeInfo ??= {
      code,
      reason: reason.toString('utf8'),
      atMs: now(),
      sinceDialMs: Math.round(performance.now() - dialledAt),
    };
    poke();
    for (const w of pongWaiters.values()) w();
  });

  const endedError = () => new Ended('the session ended');
  /** Waits until `predicate` holds, the session ends (Ended) or the deadline passes. */
  const waitFor = <T>(take: () => T | undefined, deadlineMs: number, what: string): Promise<T> =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        wake = undefined;
        reject(new Error(`${what}: no answer within ${deadlineMs} ms`));
      }, deadlineMs);
      const check = () => {
        const v = take();
        if (v !== undefined) {
          clearTimeout(timer);
          resolve(v);
        } else if (closeInfo) {
          clearTimeout(timer);
          reject(endedError());
        } else wake = check;
      };
      check();
    });
  const sleepUntil = (atMs: number): Promise<void> =>
    new Promise((resolve) => {
      const timer = setTimeout(
        () => {
          wake = undefined;
          resolve();
        },
        Math.max(1, atMs - now()),
      );
      if (closeInfo) {
        clearTimeout(timer);
        resolve();
        return;
      }
      // Only the end of the session cuts a sleep short (a stray message must not advance the clock).
      const onWake = () => {
        if (!closeInfo) {
          wake = onWake;
          return;
        }
        clearTimeout(timer);
        resolve();
      };
      wake = onWake;
    });

  async function burst(seq: number): Promise<void> {
    during = `during burst ${seq} of ${plan.bursts} (waiting for the origin's answer)`;
    const up = randomBytes(plan.burstBytes);
    const rec: BurstRecord = { seq, atMs: now(), upBytes: up.length, upSha256: sha256(up) };
    run.bursts.push(rec);
    const sent = performance.now();
    ws.send(up, { binary: true });
    const what = `burst ${seq}: the origin's ack (timeouts.requestMs)`;
    const ackMsg = await waitFor(() => inbox.shift(), ctx.timeouts.requestMs, what);
    if (ackMsg.isBinary)
      throw new Error(`burst ${seq}: the origin sent ${ackMsg.data.length} binary bytes, not its ack`);
    const ack = JSON.parse(ackMsg.data.toString('utf8')) as SessionAck;
    rec.originUpBytes = ack.upBytes;
    rec.originUpSha256 = ack.upSha256;
    rec.downDeclaredBytes = ack.downBytes;
    rec.downDeclaredSha256 = ack.downSha256;
    const down = await waitFor(
      () => inbox.shift(),
      ctx.timeouts.requestMs,
      `burst ${seq}: the origin's downstream burst (timeouts.requestMs)`,
    );
    rec.downBytes = down.data.length;
    rec.downSha256 = sha256(down.data);
    rec.roundTripMs = Math.round(performance.now() - sent);
    after = `burst ${seq} at ${rec.atMs} ms`;
  }

  async function ping(n: number): Promise<void> {
    during = `while waiting for the pong of ping ${n}`;
    const payload = `p${n}`;
    const sent = performance.now();
    run.pingsSent++;
    const answered = new Promise<void>((resolve) => pongWaiters.set(payload, resolve));
    ws.ping(Buffer.from(payload, 'latin1'));
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`ping ${n}: no pong within ${ctx.timeouts.answerMs} ms (timeouts.answerMs)`)),
        ctx.timeouts.answerMs,
      );
    });
    try {
      await Promise.race([answered, deadline]);
    } finally {
      clearTimeout(timer);
      pongWaiters.delete(payload);
    }
    if (closeInfo) throw endedError();
    run.pongs++;
    run.maxPingRttMs = Math.max(run.maxPingRttMs, Math.round(performance.now() - sent));
    after = `ping ${n} at ${now()} ms`;
  }

  try {
    const tickMs = plan.requiredMs / plan.ticks;
    let seq = 0;
    let pings = 0;
    for (let k = 1; k <= plan.ticks; k++) {
      during = 'while idle between steps';
      const tickAt = Math.round(k * tickMs);
      // Node's timers run on the loop's cached clock and can fire a millisecond early: sleep again
      // until the session clock has really reached the tick (a session reported as 1499 ms of 1500
      // would not have held for the time it names).
      while (!closeInfo && now() < tickAt) await sleepUntil(tickAt);
      if (closeInfo) throw endedError();
      const due =
        Math.floor((k * plan.bursts) / plan.ticks) - Math.floor(((k - 1) * plan.bursts) / plan.ticks);
      for (let i = 0; i < due; i++) await burst(++seq);
      // Pings fill the ticks without bursts; the last tick always proves the tunnel is still up.
      if (due === 0 || k === plan.ticks) await ping(++pings);
    }
    run.completed = true;
    run.lastedMs = now();
  } catch (err) {
    run.lastedMs = closeInfo?.atMs ?? now();
    if (!(err instanceof Ended)) run.stalled = errorMessage(err);
  }
  if (closeInfo) {
    const c = closeInfo;
    const how =
      c.code === 1006
        ? socketError
          ? `the connection was reset (${socketError}) without a WebSocket close frame`
          : tcpFin
            ? 'the connection was closed (TCP FIN) without a WebSocket close frame'
            : 'the connection dropped without a WebSocket close frame'
        : `the origin side sent a WebSocket close frame (code ${c.code}${c.reason ? ` "${c.reason}"` : ''})`;
    run.ending = {
      atMs: c.atMs,
      how,
      during,
      after,
      lastTrafficAtMs,
      sinceDialMs: c.sinceDialMs,
      wsCloseCode: c.code,
      ...(c.reason ? { wsCloseReason: c.reason } : {}),
      tcpFin,
      ...(socketError ? { socketError } : {}),
    };
  }
  // Close politely when the session is over; never wait past the deadline for it.
  try {
    if (!closeInfo) {
      ws.close(1000, 'session over');
      await waitFor(
        () => (closeInfo ? true : undefined),
        ctx.timeouts.answerMs,
        'WebSocket close handshake',
      ).catch(() => {});
    }
  } finally {
    ws.terminate();
    socket.destroy();
  }
  run.durationMs = since(t00);
  return run;
}
