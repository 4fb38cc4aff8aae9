/**
 * The agent's "auto detect" route: when its configured proxy cannot be reached, FlexxAgent's remote
 * assistance uses the end user's own internet settings, i.e. it connects straight to the host
 * (in the lab, the address ctx.directAddress gives). TLS is judged as on the tunnelled channel
 * (checks `tls-interception` and `pinning`), with evidence saying no proxy was in between.
 */
import net, { type Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { errorMessage } from '../errors.ts';
import type { KindContext, KindVerdicts } from './kinds/types.ts';
import { notApplicable, since } from './kinds/types.ts';
import { startTls } from './tunnel.ts';

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

function tcpConnect(address: string, port: number, deadlineMs: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: address, port });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no TCP answer from ${address}:${port} within ${deadlineMs} ms (timeouts.connectMs)`));
    }, deadlineMs);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.removeAllListeners('error');
      socket.on('error', () => {});
      resolve(socket);
    });
    socket.once('error', (err) => {
      clearTimeout(timer);
      socket.destroy();
      reject(err);
    });
  });
}

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
    raw = await tcpConnect(address, ctx.port, ctx.timeouts.connectMs);
  } catch (err) {
    return {
      ok: false,
      address,
      error: `direct TCP to ${target} (${address}): ${errorMessage(err)}`,
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
  const tlsMs = since(t0);
  const leaf = tls.chain[0];
  const tlsEvidence = {
    ...route,
    handshakeMs: tls.handshakeMs,
    chain: tls.chain.map((c) => ({ subject: c.subjectCN, issuer: c.issuerCN, spkiSha256: c.spkiSha256 })),
    authorized: tls.authorized,
    ...(tls.authorizationError ? { authorizationError: tls.authorizationError } : {}),
  };
  if (!leaf) {
    raw.destroy();
    const msg = tls.error ?? 'no certificate presented';
    out.set('tls-interception', {
      outcome: 'fail',
      message: `TLS on the direct route failed: ${msg}`,
      evidence: tlsEvidence,
      durationMs: tlsMs,
    });
    out.set(
      'pinning',
      pinned
        ? {
            outcome: 'fail',
            message: `pinned TLS session failed: ${msg}`,
            evidence: tlsEvidence,
            durationMs: 0,
          }
        : notApplicable('the agent does not pin this endpoint'),
    );
    return { ok: false, address, error: `TLS with ${target} on the direct route: ${msg}`, stage: 'tls' };
  }
  const intercepted = leaf.issuerCN !== ctx.originIssuerCN || !ctx.originPins.includes(leaf.spkiSha256);
  out.set(
    'tls-interception',
    intercepted
      ? {
          outcome: ctx.row.mustNotInspect ? 'fail' : 'warn',
          message: `TLS intercepted on the direct route (no proxy in between): certificate for ${ctx.host} re-signed by "${leaf.issuerCN}", not "${ctx.originIssuerCN}"`,
          evidence: { ...tlsEvidence, reSignedBy: leaf.issuer, expectedIssuer: ctx.originIssuerCN },
          durationMs: tlsMs,
        }
      : {
          outcome: 'pass',
          message: `no proxy in between (direct route, auto detect): certificate for ${ctx.host} issued by "${leaf.issuerCN}", the origin's own`,
          evidence: tlsEvidence,
          durationMs: tlsMs,
        },
  );
  if (!pinned) out.set('pinning', notApplicable('the agent does not pin this endpoint'));
  else if (tls.pinMatched)
    out.set('pinning', {
      outcome: 'pass',
      message: `presented key matches the pin (${leaf.spkiSha256}) on the direct route`,
      evidence: { ...route, expectedSpki: ctx.originPins, presentedSpki: leaf.spkiSha256 },
      durationMs: 0,
    });
  else
    out.set('pinning', {
      outcome: 'fail',
      message: `pinned agent fails closed on the direct route: expected key ${ctx.originPins[0]}, presented ${leaf.spkiSha256}`,
      evidence: { ...route, expectedSpki: ctx.originPins, presentedSpki: leaf.spkiSha256 },
      durationMs: 0,
    });
  if (!tls.socket) {
    raw.destroy();
    return { ok: false, address, error: `the agent refused the TLS session (${tls.refused})`, stage: 'tls' };
  }
  return { ok: true, socket: tls.socket, address, tcpConnectMs };
}
