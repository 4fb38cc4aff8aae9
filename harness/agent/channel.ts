/**
 * The part every tunnelled exchange shares: CONNECT through the proxy (check `connect`, and
 * `connect-response` for strict clients), then, for TLS endpoints, the handshake judged by the
 * agent (checks `tls-interception` and `pinning`). Kinds build their protocol on the socket this
 * returns; when it returns no socket, the verdicts already say why and the dependents are marked.
 */
import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type { Verdict } from '../checks/definitions.ts';
import { type KindContext, type KindVerdicts, notApplicable, notRun, since } from './kinds/types.ts';
import {
  type ChainCert,
  type ConnectAnswer,
  openTunnel,
  startTls,
  type TlsResult,
  type TunnelResult,
} from './tunnel.ts';

export interface ChannelOptions {
  /** Checks after the channel that cannot run without it (marked dependency_fail on failure). */
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
  /** Connect to this port instead of ctx.port (failover). */
  port?: number;
  /** Record verdicts under this endpoint (host:port) instead of the exchange's. */
  endpoint?: string;
}

export interface Channel {
  socket: Socket | TLSSocket;
  tunnel: Extract<TunnelResult, { ok: true }>;
  /** Present for TLS channels. */
  leaf?: ChainCert;
  intercepted?: boolean;
  tlsEvidence?: Record<string, unknown>;
}

/** The proxy's CONNECT answer as evidence: status, the exact head, bytes glued after it. */
export function answerEvidence(answer: ConnectAnswer | undefined): Record<string, unknown> {
  return answer
    ? {
        statusLine: answer.statusLine,
        statusCode: answer.statusCode,
        answerHead: answer.raw.toString('latin1'),
        gluedBytes: answer.extra.length,
      }
    : {};
}

/**
 * What strict CONNECT clients (Intel AMT firmware doing CIRA) accept: exactly `HTTP/1.1 200`, no
 * header lines, no body, and nothing glued after the blank line before the client speaks.
 */
export function judgeConnectAnswer(answer: ConnectAnswer): { problems: string[] } {
  const problems: string[] = [];
  if (answer.httpVersion !== '1.1') problems.push(`answered HTTP/${answer.httpVersion}, not HTTP/1.1`);
  if (answer.statusCode !== 200) problems.push(`status ${answer.statusCode}, not 200`);
  if (answer.headers.length) {
    problems.push(
      `${answer.headers.length} header line(s) after the status line: ${answer.headers.map(([k, v]) => `${k}: ${v}`).join(' | ')}`,
    );
  }
  const bodyHeader = answer.headers.find(([k]) => /^(content-length|transfer-encoding)$/i.test(k));
  if (bodyHeader && !(bodyHeader[0].toLowerCase() === 'content-length' && bodyHeader[1].trim() === '0')) {
    problems.push(`announces a body (${bodyHeader[0]}: ${bodyHeader[1]})`);
  }
  if (answer.extra.length) {
    const shown = answer.extra.subarray(0, 32).toString('latin1');
    problems.push(
      `${answer.extra.length} byte(s) glued to the answer before the client spoke: ${JSON.stringify(shown)}${answer.extra.length > 32 ? '…' : ''}`,
    );
  }
  return { problems };
}

export async function openChannel(
  ctx: KindContext,
  out: KindVerdicts,
  opts: ChannelOptions,
): Promise<Channel | undefined> {
  const port = opts.port ?? ctx.port;
  const target = `${ctx.host}:${port}`;
  const at = opts.endpoint ? { endpoint: opts.endpoint } : {};
  const set = (check: string, v: Verdict) => out.set(check, { ...v, ...at });
  const useTls = opts.tls ?? true;
  const later = [
    ...(opts.strictConnect ? ['connect-response'] : []),
    ...(useTls ? ['tls-interception', ...(opts.reportPinning === false ? [] : ['pinning'])] : []),
    ...opts.dependents,
  ];

  let t0 = performance.now();
  const tunnel = await openTunnel({
    proxy: ctx.proxy,
    target: { host: ctx.host, port },
    connectTimeoutMs: ctx.timeouts.connectMs,
    answerTimeoutMs: ctx.timeouts.answerMs,
    ...(ctx.exchange.userAgent ? { userAgent: ctx.exchange.userAgent } : {}),
  });
  const common = { request: tunnel.requestHead, timings: tunnel.timings };
  if (!tunnel.ok) {
    set('connect', {
      outcome: 'fail',
      message: tunnel.answer
        ? `CONNECT ${target} answered "${tunnel.answer.statusLine}", not 200`
        : `CONNECT ${target} failed: ${tunnel.error}`,
      evidence: {
        ...common,
        ...answerEvidence(tunnel.answer),
        ...(tunnel.errorCode ? { errorCode: tunnel.errorCode } : {}),
      },
      durationMs: since(t0),
    });
    for (const c of later)
      if (!out.has(c)) set(c, notRun('the CONNECT tunnel was not established', 'connect'));
    return undefined;
  }
  set('connect', {
    outcome: 'pass',
    message: `CONNECT ${target} answered "${tunnel.answer.statusLine}"`,
    evidence: { ...common, ...answerEvidence(tunnel.answer) },
    durationMs: since(t0),
  });

  let strictRefused = false;
  if (opts.strictConnect) {
    const { problems } = judgeConnectAnswer(tunnel.answer);
    strictRefused = problems.length > 0;
    set(
      'connect-response',
      problems.length
        ? {
            outcome: 'fail',
            message: `a strict CONNECT client rejects this answer: ${problems.join('; ')}`,
            evidence: {
              answerHead: tunnel.answer.raw.toString('latin1'),
              problems,
              gluedBytes: tunnel.answer.extra.length,
            },
            durationMs: 0,
          }
        : {
            outcome: 'pass',
            message: `clean "${tunnel.answer.statusLine}" with no header lines, body or glued bytes`,
            evidence: { answerHead: tunnel.answer.raw.toString('latin1') },
            durationMs: 0,
          },
    );
  }

  if (strictRefused) {
    // Strict firmware drops the connection on any flaw in the answer: nothing after it runs.
    tunnel.socket.destroy();
    for (const c of later) {
      if (!out.has(c)) set(c, notRun('the strict client rejected the CONNECT answer', 'connect-response'));
    }
    return undefined;
  }

  if (!useTls) return { socket: tunnel.socket, tunnel };

  t0 = performance.now();
  const pinned = opts.pin ?? (ctx.row.pinned || ctx.row.mustNotInspect);
  const tls = await startTls(tunnel.socket, {
    servername: ctx.host,
    ca: ctx.trust,
    ...(pinned ? { pins: ctx.originPins } : {}),
    ...(opts.clientCert ? { cert: ctx.clientCert.certPem, key: ctx.clientCert.keyPem } : {}),
    ...(opts.alpn ? { alpn: opts.alpn } : {}),
    timeoutMs: ctx.timeouts.tlsMs,
  });
  const judged = judgeAgentTls(ctx, set, tls, {
    pinned,
    reportPinning: opts.reportPinning !== false,
    tlsMs: since(t0),
  });
  const { leaf, intercepted, tlsEvidence } = judged;
  if (!leaf) {
    for (const c of opts.dependents) if (!out.has(c)) set(c, notRun('no TLS session', 'tls-interception'));
    return undefined;
  }
  if (!tls.socket) {
    const by = tls.pinMatched === false ? 'pinning' : 'tls-interception';
    for (const c of opts.dependents) {
      if (!out.has(c)) set(c, notRun(`the agent refused the TLS session (${tls.refused})`, by));
    }
    return undefined;
  }
  return { socket: tls.socket, tunnel, leaf, intercepted, tlsEvidence };
}

/** How the agent reached the host, when not through the proxy's tunnel (the auto-detect route). */
export interface AgentRoute {
  /** Inserted into messages, e.g. "on the direct route". */
  phrase: string;
  /** Names the route when nothing was in between, e.g. "direct route, auto detect". */
  label: string;
  evidence: Record<string, unknown>;
}

/**
 * The agent's judgement of a TLS session (checks `tls-interception` and `pinning`): was the
 * certificate the origin's own, and does the key match the pin. Shared by the tunnelled channel
 * and the direct route; returns the leaf (absent when the handshake failed).
 */
export function judgeAgentTls(
  ctx: KindContext,
  set: (check: string, v: Verdict) => void,
  tls: TlsResult,
  opts: { pinned: boolean; reportPinning: boolean; tlsMs: number; route?: AgentRoute },
): { leaf?: ChainCert; intercepted?: boolean; tlsEvidence: Record<string, unknown> } {
  const route = opts.route;
  const on = route ? ` ${route.phrase}` : '';
  const leaf = tls.chain[0];
  const tlsEvidence = {
    ...(route?.evidence ?? {}),
    handshakeMs: tls.handshakeMs,
    chain: tls.chain.map((c) => ({ subject: c.subjectCN, issuer: c.issuerCN, spkiSha256: c.spkiSha256 })),
    authorized: tls.authorized,
    ...(tls.authorizationError ? { authorizationError: tls.authorizationError } : {}),
  };
  if (!leaf) {
    const msg = tls.error ?? 'no certificate presented';
    set('tls-interception', {
      outcome: 'fail',
      message: `TLS ${route ? route.phrase : 'through the tunnel'} failed: ${msg}`,
      evidence: tlsEvidence,
      durationMs: opts.tlsMs,
    });
    if (opts.reportPinning) {
      set(
        'pinning',
        opts.pinned
          ? {
              outcome: 'fail',
              message: `pinned TLS session failed: ${msg}`,
              evidence: tlsEvidence,
              durationMs: 0,
            }
          : notApplicable('the agent does not pin this endpoint'),
      );
    }
    return { tlsEvidence };
  }
  const intercepted = leaf.issuerCN !== ctx.originIssuerCN || !ctx.originPins.includes(leaf.spkiSha256);
  if (!intercepted) {
    set('tls-interception', {
      outcome: 'pass',
      message: route
        ? `no proxy in between (${route.label}): certificate for ${ctx.host} issued by "${leaf.issuerCN}", the origin's own`
        : `certificate for ${ctx.host} issued by "${leaf.issuerCN}", the origin's own`,
      evidence: tlsEvidence,
      durationMs: opts.tlsMs,
    });
  } else {
    const what = `TLS intercepted${route ? `${on} (no proxy in between)` : ''}: certificate for ${ctx.host} re-signed by "${leaf.issuerCN}", not "${ctx.originIssuerCN}"`;
    set('tls-interception', {
      outcome: ctx.row.mustNotInspect ? 'fail' : 'warn',
      message: ctx.row.mustNotInspect ? `${what}; the vendor says this host must not be inspected` : what,
      evidence: {
        ...tlsEvidence,
        reSignedBy: leaf.issuer,
        expectedIssuer: ctx.originIssuerCN,
        source: ctx.row.source,
      },
      durationMs: opts.tlsMs,
    });
  }
  if (opts.reportPinning) {
    const pinEvidence = {
      ...(route?.evidence ?? {}),
      expectedSpki: ctx.originPins,
      presentedSpki: leaf.spkiSha256,
    };
    if (!opts.pinned) set('pinning', notApplicable('the agent does not pin this endpoint'));
    else if (tls.pinMatched)
      set('pinning', {
        outcome: 'pass',
        message: `presented key matches the pin (${leaf.spkiSha256})${on}`,
        evidence: pinEvidence,
        durationMs: 0,
      });
    else
      set('pinning', {
        outcome: 'fail',
        message: `pinned agent fails closed${on}: expected key ${ctx.originPins[0]}, presented ${leaf.spkiSha256} (issued by "${leaf.issuerCN}")`,
        evidence: { ...pinEvidence, presentedIssuer: leaf.issuer },
        durationMs: 0,
      });
  }
  return { leaf, intercepted, tlsEvidence };
}
