/**
 * The agent's way out to a host: through an HTTP proxy (CONNECT, or a forwarded request for plain
 * HTTP), or directly (the "auto detect" route an agent falls back to). Kinds open their channel
 * with `dial` and never build a proxy request themselves; room is left for a PAC list, a chain of
 * proxies and TLS to the proxy as further route kinds.
 */
import type { Socket } from 'node:net';
import {
  connectTcp,
  openTunnel,
  type ProxyAddress,
  type TcpConnectError,
  type TunnelResult,
} from '../agent/tunnel.ts';

export interface ProxyRoute {
  via: 'proxy';
  proxy: ProxyAddress;
  /** The check that judges the first step on this route. */
  entryCheck: 'connect';
  label: string;
}

export interface DirectRoute {
  via: 'direct';
  /** The address the agent's own network resolves a host to (in the lab, the loopback origin). */
  resolve(host: string): string | undefined;
  entryCheck: 'fallback';
  label: string;
  /** The proxy the agent could not reach, for evidence. */
  instead?: string;
}

export type Route = ProxyRoute | DirectRoute;

export function proxyRoute(proxy: ProxyAddress): ProxyRoute {
  return { via: 'proxy', proxy, entryCheck: 'connect', label: `proxy ${proxy.host}:${proxy.port}` };
}

export function directRoute(resolve: (host: string) => string | undefined, instead?: string): DirectRoute {
  return {
    via: 'direct',
    resolve,
    entryCheck: 'fallback',
    label: 'direct (auto detect)',
    ...(instead ? { instead } : {}),
  };
}

export interface DialOptions {
  connectMs: number;
  answerMs: number;
  userAgent?: string;
}

export type DialResult =
  | {
      ok: true;
      socket: Socket;
      tunnel?: Extract<TunnelResult, { ok: true }>;
      evidence: Record<string, unknown>;
    }
  | {
      ok: false;
      tunnel?: Extract<TunnelResult, { ok: false }>;
      error: string;
      evidence: Record<string, unknown>;
    };

/** A byte stream to `target` on `route`: a CONNECT tunnel, or a TCP connection straight to the host. */
export async function dial(
  route: Route,
  target: { host: string; port: number },
  o: DialOptions,
): Promise<DialResult> {
  if (route.via === 'proxy') {
    const tunnel = await openTunnel({
      proxy: route.proxy,
      target,
      connectTimeoutMs: o.connectMs,
      answerTimeoutMs: o.answerMs,
      ...(o.userAgent ? { userAgent: o.userAgent } : {}),
    });
    return tunnel.ok
      ? { ok: true, socket: tunnel.socket, tunnel, evidence: {} }
      : {
          ok: false,
          tunnel,
          error: tunnel.error ?? `proxy answered "${tunnel.answer?.statusLine}"`,
          evidence: {},
        };
  }
  const at = `${target.host}:${target.port}`;
  const address = route.resolve(target.host);
  const evidence = {
    route: route.label,
    ...(address ? { address: `${address}:${target.port}` } : {}),
    ...(route.instead ? { proxy: route.instead } : {}),
  };
  if (!address) return { ok: false, error: `no auto-detect route resolves ${target.host}`, evidence };
  const t0 = performance.now();
  try {
    const socket = await connectTcp(address, target.port, o.connectMs);
    return { ok: true, socket, evidence: { ...evidence, tcpConnectMs: Math.round(performance.now() - t0) } };
  } catch (err) {
    const e = err as TcpConnectError;
    const why = e.timedOut
      ? `no TCP answer from ${address}:${target.port} within ${o.connectMs} ms (timeouts.connectMs)`
      : e.message;
    return { ok: false, error: `direct TCP to ${at} (${address}): ${why}`, evidence };
  }
}
