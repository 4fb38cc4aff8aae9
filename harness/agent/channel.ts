/**
 * The part every tunnelled exchange shares: the agent's route to the host (CONNECT through the
 * proxy, judged by `connect` and, for strict clients, `connect-response`; or the auto-detect route),
 * then, for TLS endpoints, the handshake judged by the agent's trust policy (`tls-interception`,
 * `pinning`). Kinds build their protocol on the socket this returns. When it returns no socket,
 * the verdicts say why; the runner marks the dependents from each check's dependsOn, and this marks
 * them only where no failed check explains the stop (an agent refusing an interception it was only
 * warned about).
 */
import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { judgeConnect } from '../checks/connect.ts';
import { judgeConnectResponse } from '../checks/connect-response.ts';
import { judgeProxyAuth } from '../checks/proxy-auth.ts';
import { judgeTls } from '../checks/tls-judgement.ts';
import type { Verdict } from '../checks/types.ts';
import { notApplicable } from '../checks/types.ts';
import { diagnoseReach, type Reach } from '../route/reach.ts';
import { dial } from '../route/route.ts';
import { type KindContext, type KindVerdicts, notRun, since } from './kinds/types.ts';
import { type ChainCert, startTls } from './tls.ts';
import type { TunnelResult } from './tunnel.ts';

export interface ChannelOptions {
  /** Checks after the channel that cannot run without it. */
  dependents: string[];
  /** Speak TLS inside the tunnel (default true). */
  tls?: boolean;
  /** Judge the CONNECT answer strictly (check `connect-response`). */
  strictConnect?: boolean;
  /** Present the device certificate (mutual TLS). */
  clientCert?: boolean;
  /** The agent pins the origin key (default: the row is pinned or must not be inspected). */
  pin?: boolean;
  /** Report `pinning` (default true for TLS channels). */
  reportPinning?: boolean;
  alpn?: string[];
}

export interface Channel {
  socket: Socket | TLSSocket;
  /** The CONNECT tunnel, on a route through a proxy. */
  tunnel?: Extract<TunnelResult, { ok: true }>;
  /** Present for TLS channels. */
  leaf?: ChainCert;
  intercepted?: boolean;
  tlsEvidence?: Record<string, unknown>;
}

/**
 * Through a proxy, when the agent's own session cannot tell: did the tunnel reach the origin
 * (harness/route/reach.ts)? Amends the `connect` verdict with the answer; false when it did not.
 */
function diagnose(ctx: KindContext, speaksTls: boolean): Promise<Reach> | undefined {
  if (ctx.route.via !== 'proxy' || !ctx.reachMarker) return undefined;
  return diagnoseReach(ctx.route, { host: ctx.host, port: ctx.port }, speaksTls, {
    ...ctx.reachMarker,
    timeoutMs: ctx.timeouts.answerMs,
    connectTimeoutMs: ctx.timeouts.connectMs,
    ...(ctx.exchange.userAgent ? { userAgent: ctx.exchange.userAgent } : {}),
  });
}

async function reachedOrigin(out: KindVerdicts, pending: Promise<Reach> | undefined): Promise<boolean> {
  const connect = out.get('connect');
  if (!pending || connect?.outcome !== 'pass') return true;
  const reach = await pending;
  const evidence = {
    ...connect.evidence,
    reach: { reached: reach.reached ?? 'unknown', how: reach.how, ...reach.evidence },
    ...(reach.insideStatusCode !== undefined ? { insideStatusCode: reach.insideStatusCode } : {}),
  };
  if (reach.reached === false) {
    out.set('connect', {
      ...connect,
      outcome: 'fail',
      message: `${connect.message}, but the tunnel did not reach the origin: ${reach.how}`,
      evidence,
    });
    return false;
  }
  out.set(
    'connect',
    reach.reached === true
      ? { ...connect, message: `${connect.message}; the tunnel reached the origin (${reach.how})`, evidence }
      : {
          ...connect,
          // a 2xx alone is not the tunnel the check names: not a pass
          outcome: 'warn',
          message: `${connect.message}, but whether the tunnel reached the origin could not be confirmed: ${reach.how}`,
          evidence,
        },
  );
  return true;
}

export async function openChannel(
  ctx: KindContext,
  out: KindVerdicts,
  opts: ChannelOptions,
): Promise<Channel | undefined> {
  const target = `${ctx.host}:${ctx.port}`;
  const route = ctx.route;
  const set = (check: string, v: Verdict) => out.set(check, v);

  // raw bytes carry no proof of where they went: look behind the proxy first, so the agent's own
  // connection is never left unattended while the harness looks
  const early = opts.tls === false ? diagnose(ctx, false) : undefined;
  await early;
  let t0 = performance.now();
  const d = await dial(
    route,
    { host: ctx.host, port: ctx.port },
    {
      connectMs: ctx.timeouts.connectMs,
      answerMs: ctx.timeouts.answerMs,
      ...(ctx.exchange.userAgent ? { userAgent: ctx.exchange.userAgent } : {}),
    },
  );
  if (route.via === 'proxy' && d.tunnel)
    set('connect', judgeConnect(target, d.tunnel, since(t0), route.proxy));
  if (route.via === 'proxy' && route.proxy.auth)
    set(
      'proxy-auth',
      d.tunnel
        ? judgeProxyAuth(target, d.tunnel, since(t0))
        : {
            ...notApplicable(`CONNECT ${target} was not tried: ${d.ok ? 'no tunnel' : d.error}`),
            durationMs: 0,
          },
    );
  if (!d.ok) {
    // on the direct route the first step is the fallback's: the route policy completes its verdict
    if (route.via === 'direct')
      set('fallback', { outcome: 'fail', message: d.error, evidence: d.evidence, durationMs: since(t0) });
    return undefined;
  }
  if (opts.strictConnect && d.tunnel) {
    const v = judgeConnectResponse(d.tunnel.answer);
    set('connect-response', v);
    // strict firmware drops the connection on any flaw in the answer: nothing after it runs
    if (v.outcome !== 'pass') {
      d.socket.destroy();
      return undefined;
    }
  }
  if (opts.tls === false) {
    // raw bytes: nothing yet says the tunnel reached the origin
    if (!(await reachedOrigin(out, early))) {
      d.socket.destroy();
      return undefined;
    }
    return { socket: d.socket, ...(d.tunnel ? { tunnel: d.tunnel } : {}) };
  }

  t0 = performance.now();
  const pinned = opts.pin ?? (ctx.row.pinned || ctx.row.mustNotInspect);
  const tls = await startTls(d.socket, {
    servername: ctx.host,
    ca: ctx.trust.ca,
    ...(pinned && ctx.trust.originPins ? { pins: ctx.trust.originPins } : {}),
    ...(opts.clientCert ? { cert: ctx.clientCert.certPem, key: ctx.clientCert.keyPem } : {}),
    ...(opts.alpn ? { alpn: opts.alpn } : {}),
    timeoutMs: ctx.timeouts.tlsMs,
  });
  const reportPinning = opts.reportPinning !== false;
  const judged = judgeTls(tls, {
    policy: ctx.trust,
    host: ctx.host,
    row: ctx.row,
    pinned,
    reportPinning,
    tlsMs: since(t0),
    ...(route.via === 'direct'
      ? { route: { phrase: 'on the direct route', label: 'direct route, auto detect', evidence: d.evidence } }
      : {}),
  });
  set('tls-interception', judged.interception);
  if (judged.pinning) set('pinning', judged.pinning);
  // an agent that has its session shows where it goes (the origin's certificate, or the answers its
  // protocol gets through the inspection); one that has none cannot tell: look behind the proxy
  if (!tls.socket && !(await reachedOrigin(out, diagnose(ctx, true)))) {
    d.socket.destroy();
    return undefined;
  }
  if (!tls.socket) {
    d.socket.destroy();
    if (judged.leaf) {
      // the agent refused a session no failed check explains (an interception it was only warned about)
      const by = tls.pinMatched === false && reportPinning ? 'pinning' : 'tls-interception';
      for (const c of opts.dependents) {
        if (!out.has(c)) set(c, notRun(`the agent refused the TLS session (${tls.refused})`, by));
      }
    }
    return undefined;
  }
  return {
    socket: tls.socket,
    ...(d.tunnel ? { tunnel: d.tunnel } : {}),
    leaf: judged.leaf,
    ...(judged.intercepted !== undefined ? { intercepted: judged.intercepted } : {}),
    tlsEvidence: judged.tlsEvidence,
  };
}
