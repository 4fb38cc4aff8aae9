/**
 * One simulated agent session under load, on the same agent code as the checks (openTunnel for the
 * CONNECT, startTls for TLS inside the tunnel, undici for HTTP, the `ws` client for WebSocket), with
 * each phase's latency recorded and every failure counted by class. A session that the far side
 * closes is reopened as an agent would: a report session between reports (`reconnects`), a held
 * tunnel at once (a `drop`).
 */
import type { TLSSocket } from 'node:tls';
import type { Client } from 'undici';
import { reportBody } from '../agent/bodies.ts';
import { clientOver } from '../agent/http.ts';
import { startTls } from '../agent/tls.ts';
import { openTunnel, type ProxyAddress } from '../agent/tunnel.ts';
import { errorMessage } from '../errors.ts';
import type { Phase } from './histograms.ts';
import { runHold } from './hold.ts';
import type { SessionPlan, Upload } from './model.ts';

export interface LoadDeadlines {
  connectMs: number;
  answerMs: number;
  tlsMs: number;
  requestMs: number;
}

export interface Counters {
  sessions: number;
  requests: number;
  reconnects: number;
  keepalives: number;
  /** Held tunnels the far side closed before the run ended. */
  drops: number;
  errors: Map<string, { count: number; example: string; firstAtMs: number }>;
}

/** Where a session's measurements go: `proxycheck load`'s histograms, or Artillery's metrics. */
export interface Recorder {
  record(phase: Phase, ms: number): void;
  /** An error happened now (counted by class in `counters`, and reported by `onError`). */
  error(): void;
}

export interface AgentContext {
  proxy: ProxyAddress;
  /** The agents' trust store (PEM). */
  ca: string[];
  /** The vPro device certificate (mutual TLS for CIRA). */
  clientCert?: { certPem: string; keyPem: string };
  recorder: Recorder;
  /** Told of each error as it happens (Artillery's error counters). */
  onError?: (errorClass: string, message: string) => void;
  counters: Counters;
  deadlines: LoadDeadlines;
  /** Profile seconds × timeScale = real seconds. */
  timeScale: number;
  t0: number;
  /** Aborted when the run (or this step) ends; waits listen to it and stop listening when done. */
  stopped: AbortSignal;
  isStopped: () => boolean;
  /** Agents with a session open now (for the over-time chart). */
  open: { n: number };
}

export function newCounters(): Counters {
  return { sessions: 0, requests: 0, reconnects: 0, keepalives: 0, drops: 0, errors: new Map() };
}

/** When a run (or a step) stops: a signal for waits, a flag for loops, and the trigger. */
export function stopSignal(): { stopped: AbortSignal; isStopped: () => boolean; stop: () => void } {
  const controller = new AbortController();
  return {
    stopped: controller.signal,
    isStopped: () => controller.signal.aborted,
    stop: () => controller.abort(),
  };
}

export class LoadError extends Error {
  constructor(
    readonly errorClass: string,
    message: string,
  ) {
    super(message);
  }
}

export function countError(ctx: AgentContext, errorClass: string, message: string): void {
  ctx.recorder.error();
  ctx.onError?.(errorClass, message);
  const e = ctx.counters.errors.get(errorClass);
  if (e) e.count++;
  else
    ctx.counters.errors.set(errorClass, {
      count: 1,
      example: message,
      firstAtMs: Math.round(performance.now() - ctx.t0),
    });
}

/** Opens CONNECT + TLS to the plan's origin, recording tcp, connect and tls; throws LoadError. */
export async function openSession(ctx: AgentContext, plan: SessionPlan): Promise<TLSSocket> {
  const tun = await openTunnel({
    proxy: ctx.proxy,
    target: { host: plan.host, port: plan.port },
    connectTimeoutMs: ctx.deadlines.connectMs,
    answerTimeoutMs: ctx.deadlines.answerMs,
    userAgent: plan.userAgent,
  });
  if (tun.timings.tcpConnectMs !== undefined) ctx.recorder.record('tcp', tun.timings.tcpConnectMs);
  if (!tun.ok) {
    if (tun.answer)
      throw new LoadError(
        `connect ${tun.answer.statusCode}`,
        `CONNECT ${plan.host}:${plan.port}: ${tun.answer.statusLine}`,
      );
    const code = tun.errorCode ?? 'error';
    throw new LoadError(
      tun.timings.tcpConnectMs === undefined ? `tcp ${code}` : `connect ${code}`,
      tun.error ?? code,
    );
  }
  if (tun.timings.connectAnswerMs !== undefined) ctx.recorder.record('connect', tun.timings.connectAnswerMs);
  const t = await startTls(tun.socket, {
    servername: plan.host,
    ca: ctx.ca,
    timeoutMs: ctx.deadlines.tlsMs,
    describe: false,
    ...(plan.kind === 'cira' && ctx.clientCert
      ? { cert: ctx.clientCert.certPem, key: ctx.clientCert.keyPem }
      : {}),
  });
  if (!t.socket) {
    tun.socket.destroy();
    throw new LoadError('tls', `TLS to ${plan.host}: ${t.refused ?? t.error}`);
  }
  if (t.handshakeMs !== undefined) ctx.recorder.record('tls', t.handshakeMs);
  ctx.counters.sessions++;
  return t.socket;
}

/** Waits `ms` or until the run stops; true when the wait ran out (the run goes on). */
export function pause(ctx: AgentContext, ms: number): Promise<boolean> {
  if (ctx.isStopped()) return Promise.resolve(false);
  // one listener per wait, removed when the wait runs out: a held tunnel pauses once per
  // keep-alive, and thousands of them must not pile up listeners until the run stops
  return new Promise((resolve) => {
    const onStop = () => {
      clearTimeout(timer);
      resolve(false);
    };
    const timer = setTimeout(() => {
      ctx.stopped.removeEventListener('abort', onStop);
      resolve(!ctx.isStopped());
    }, ms);
    ctx.stopped.addEventListener('abort', onStop, { once: true });
  });
}

async function post(
  ctx: AgentContext,
  client: Client,
  plan: Extract<SessionPlan, { kind: 'reports' }>,
  u: Upload,
) {
  const body = reportBody(u.name, u.bytes);
  const t0 = performance.now();
  const res = await client.request({
    method: 'POST',
    path: u.path,
    headers: [...plan.headers.flat(), 'user-agent', plan.userAgent],
    body,
    headersTimeout: ctx.deadlines.requestMs,
    bodyTimeout: ctx.deadlines.requestMs,
  });
  ctx.recorder.record('firstByte', performance.now() - t0);
  await res.body.arrayBuffer();
  ctx.recorder.record('upload', performance.now() - t0);
  ctx.counters.requests++;
  if (res.statusCode < 200 || res.statusCode > 299)
    throw new LoadError(`http ${res.statusCode}`, `POST ${plan.host}${u.path}: ${res.statusCode}`);
}

async function runReports(ctx: AgentContext, plan: Extract<SessionPlan, { kind: 'reports' }>): Promise<void> {
  let socket: TLSSocket | undefined;
  let client: Client | undefined;
  let closed = true;
  const everyMs = plan.everySeconds * 1000 * ctx.timeScale;
  const next = [plan.first];
  let turn = 0;
  try {
    while (!ctx.isStopped()) {
      const u = next.shift() ?? plan.repeat[turn++ % plan.repeat.length];
      if (!u) return;
      try {
        if (closed) {
          if (socket) ctx.counters.reconnects++;
          await client?.destroy().catch(() => {});
          socket = await openSession(ctx, plan);
          ctx.open.n++;
          closed = false;
          const s = socket;
          s.once('close', () => {
            if (s === socket) {
              closed = true;
              ctx.open.n--;
            }
          });
          client = clientOver(socket, `https://${socket.servername || 'origin'}`);
        }
        await post(ctx, client as Client, plan, u);
      } catch (err) {
        if (ctx.isStopped()) return;
        if (err instanceof LoadError) countError(ctx, err.errorClass, err.message);
        else countError(ctx, 'http', `${plan.host}: ${errorMessage(err)}`);
        socket?.destroy();
      }
      if (!(await pause(ctx, everyMs))) return;
    }
  } finally {
    await client?.destroy().catch(() => {});
    socket?.destroy();
  }
}

/** Runs one session plan until the run stops. Never throws. */
export async function runSession(ctx: AgentContext, plan: SessionPlan): Promise<void> {
  try {
    if (plan.kind === 'reports') await runReports(ctx, plan);
    else await runHold(ctx, plan);
  } catch (err) {
    if (!ctx.isStopped()) countError(ctx, 'harness', errorMessage(err));
  }
}
