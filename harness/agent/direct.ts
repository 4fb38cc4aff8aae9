/**
 * The agent's "auto detect" route: when its configured proxy cannot be reached, FlexxAgent's remote
 * assistance uses the end user's own internet settings, i.e. it connects straight to the host
 * (in the lab, the address ctx.directAddress gives). TLS is judged as on the tunnelled channel
 * (checks `tls-interception` and `pinning`), with evidence saying no proxy was in between.
 */
import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { judgeAgentTls } from './channel.ts';
import type { KindContext, KindVerdicts } from './kinds/types.ts';
import { since } from './kinds/types.ts';
import { connectTcp, startTls, type TcpConnectError } from './tunnel.ts';

/**
 * Why openChannel's CONNECT failed, read from its `connect` verdict: could the agent reach the proxy
 * at all? Only a proxy that never accepted the TCP connection (refused, unreachable, no answer
 * within the deadline) is "unreachable"; one that answered, even with 403, is not.
 */
export function proxyUnreachable(
  out: KindVerdicts,
  proxy: { host: string; port: number },
): { unreachable: boolean; why: string } {
  const v = out.get('connect');
  const ev = (v?.evidence ?? {}) as {
    timings?: { tcpConnectMs?: number };
    statusLine?: string;
    errorCode?: string;
  };
  const at = `${proxy.host}:${proxy.port}`;
  if (!v || v.outcome === 'pass') return { unreachable: false, why: 'it answered CONNECT' };
  if (ev.statusLine) return { unreachable: false, why: `it answered "${ev.statusLine}"` };
  if (ev.timings?.tcpConnectMs !== undefined)
    return { unreachable: false, why: `it accepted the TCP connection (${v.message})` };
  if (ev.errorCode === 'PC_DEADLINE')
    return { unreachable: true, why: `no TCP answer from ${at} (${v.message})` };
  return { unreachable: true, why: `${ev.errorCode ?? 'error'} ${at}` };
}

export type DirectResult =
  | { ok: true; socket: TLSSocket; address: string; tcpConnectMs: number }
  | { ok: false; address?: string; error: string; stage: 'route' | 'tcp' | 'tls' };

/**
 * Connects straight to the host and runs TLS, setting `tls-interception` and `pinning` for what the
 * direct route presented. Returns the agent's TLS socket when it accepted the session.
 */
export async function directChannel(ctx: KindContext, out: KindVerdicts): Promise<DirectResult> {
  const target = `${ctx.host}:${ctx.port}`;
  const address = ctx.directAddress(ctx.host);
  if (!address) return { ok: false, error: `no auto-detect route resolves ${ctx.host}`, stage: 'route' };
  const route = { route: 'direct (auto detect)', address: `${address}:${ctx.port}` };
  let t0 = performance.now();
  let raw: Socket;
  try {
    raw = await connectTcp(address, ctx.port, ctx.timeouts.connectMs);
  } catch (err) {
    const e = err as TcpConnectError;
    const why = e.timedOut
      ? `no TCP answer from ${address}:${ctx.port} within ${ctx.timeouts.connectMs} ms (timeouts.connectMs)`
      : e.message;
    return {
      ok: false,
      address,
      error: `direct TCP to ${target} (${address}): ${why}`,
      stage: 'tcp',
    };
  }
  const tcpConnectMs = since(t0);
  t0 = performance.now();
  const pinned = ctx.row.pinned || ctx.row.mustNotInspect;
  const tls = await startTls(raw, {
    servername: ctx.host,
    ca: ctx.trust,
    ...(pinned ? { pins: ctx.originPins } : {}),
    timeoutMs: ctx.timeouts.tlsMs,
  });
  const { leaf } = judgeAgentTls(ctx, (c, v) => out.set(c, v), tls, {
    pinned,
    reportPinning: true,
    tlsMs: since(t0),
    route: { phrase: 'on the direct route', label: 'direct route, auto detect', evidence: route },
  });
  if (!leaf) {
    raw.destroy();
    return {
      ok: false,
      address,
      error: `TLS with ${target} on the direct route: ${tls.error ?? 'no certificate presented'}`,
      stage: 'tls',
    };
  }
  if (!tls.socket) {
    raw.destroy();
    return { ok: false, address, error: `the agent refused the TLS session (${tls.refused})`, stage: 'tls' };
  }
  return { ok: true, socket: tls.socket, address, tcpConnectMs };
}
