/**
 * `cira`: Intel vPro/AMT Client Initiated Remote Access through a proxy (seed 000, vPro: the proxy
 * must allow CONNECT to the ports used, must not inspect TLS to the Flexxible URL, and must not
 * touch the CONNECT exchange). The agent plays the AMT firmware:
 *  1. CONNECT, judged as the firmware judges it: nothing but a clean `HTTP/1.1 200` (connect,
 *     connect-response);
 *  2. mutual TLS presenting the device certificate; AMT checks the server chain but pins nothing
 *     (tls-interception; mtls: passes only when the origin reports the device CN it verified);
 *  3. APF (AMT Port Forwarding) inside: PROTOCOLVERSION, auth@amt.intel.com with a password
 *     USERAUTH_REQUEST, pfwd@amt.intel.com, a tcpip-forward GLOBAL_REQUEST (protocol);
 *  4. the tunnel held for the session with a KEEPALIVE_REQUEST every keepaliveSeconds, each
 *     answered with its 4-byte cookie (tunnel-keepalive).
 * Durations are scaled by ctx.timeScale; ctx.idleSeconds (real seconds) replaces the session length.
 * The firmware's APF connection (client, message log, message names) is agent/apf-client.ts.
 */
import { randomBytes, X509Certificate } from 'node:crypto';
import type { Verdict } from '../../checks/types.ts';
import { errorMessage } from '../../errors.ts';
import { APF_AUTH_SERVICE, APF_PFWD_SERVICE } from '../../lab/services/apf-codec.ts';
import { ApfClient, hexCookie } from '../apf-client.ts';
import { openChannel } from '../channel.ts';
import { commonName } from '../tls.ts';
import { type ExchangeKind, type KindContext, type KindVerdicts, notRun, scaledMs, since } from './types.ts';

/** The AMT port a CIRA session forwards first (WS-Management over TLS). */
const FORWARDED_PORT = 16993;
const DEFAULT_SESSION_SECONDS = 300;
/** The MPS's "typical keepalive interval for AMT CIRA" (Open AMT MPS APFProcessor). */
const DEFAULT_KEEPALIVE_SECONDS = 30;

const strict = (x: { strictConnect?: boolean }) => x.strictConnect !== false;
const mutual = (x: { clientCert?: boolean }) => x.clientCert !== false;

export const ciraKind: ExchangeKind = {
  id: 'cira',
  options: {
    session: { $ref: '#/$defs/session' },
    clientCert: {
      type: 'boolean',
      description: 'mutual TLS with a device certificate from the lab device CA',
    },
    strictConnect: {
      type: 'boolean',
      description: 'judge the CONNECT answer as strict firmware does (connect-response)',
    },
  },
  checks: (x) => [
    'connect',
    ...(strict(x) ? ['connect-response'] : []),
    'tls-interception',
    ...(mutual(x) ? ['mtls'] : []),
    'protocol',
    'tunnel-keepalive',
  ],
  lab: (x) => [{ port: x.port, transport: 'tls', mtls: mutual(x), service: 'apf' }],
  tunnelNeeds: (x) => ({
    gapSeconds: x.session?.keepaliveSeconds ?? DEFAULT_KEEPALIVE_SECONDS,
    sessionSeconds: x.session?.seconds ?? DEFAULT_SESSION_SECONDS,
  }),
  pinsOrigin: false,
  run: runCira,
};

function issuerCN(certPem: string): string {
  try {
    return commonName(new X509Certificate(certPem).issuer);
  } catch {
    return 'unknown';
  }
}

function interceptionFail(
  ctx: KindContext,
  by: string,
  what: string,
  evidence: Record<string, unknown>,
  durationMs: number,
): Verdict {
  return {
    outcome: 'fail',
    message: `TLS to ${ctx.host}:${ctx.port} re-signed by "${by}": an intercepting proxy terminates TLS and cannot carry the device certificate to the origin; ${what}`,
    evidence: { interceptedBy: by, presentedCN: ctx.clientCert.subjectCN, ...evidence },
    durationMs,
  };
}

async function runCira(ctx: KindContext): Promise<KindVerdicts> {
  const dialledAt = performance.now();
  const out: KindVerdicts = new Map();
  const x = ctx.exchange;
  const useMtls = mutual(x);
  const channel = await openChannel(ctx, out, {
    dependents: [...(useMtls ? ['mtls'] : []), 'protocol', 'tunnel-keepalive'],
    strictConnect: strict(x),
    clientCert: useMtls,
    pin: ciraKind.pinsOrigin,
    reportPinning: false,
  });
  if (!channel) {
    // The agent refused a re-signed certificate: the session never reached the origin, and could
    // not have carried the device certificate had the agent accepted it.
    const tlsEvidence = out.get('tls-interception')?.evidence ?? {};
    const chain = tlsEvidence.chain as Array<{ issuer: string }> | undefined;
    if (useMtls && tlsEvidence.reSignedBy && chain?.[0]) {
      out.set(
        'mtls',
        interceptionFail(
          ctx,
          chain[0].issuer,
          'the agent refused the re-signed certificate, so no session reached the origin',
          { reSignedBy: tlsEvidence.reSignedBy, authorizationError: tlsEvidence.authorizationError },
          0,
        ),
      );
    }
    return out;
  }

  const interceptedBy = channel.intercepted ? channel.leaf?.issuerCN : undefined;
  const answerMs = ctx.timeouts.answerMs;
  const client = new ApfClient(channel.socket);
  const timers = new Set<NodeJS.Timeout>();
  try {
    // --- protocol (and mtls, from what the origin reports) ---
    const setup = await client.setUp({ waitForOriginInfo: useMtls, answerMs, forwardPort: FORWARDED_PORT });
    const { protocolError, versionReply, forwardPort } = setup;
    const setupMs = since(client.t0);

    if (useMtls) out.set('mtls', judgeMtls(ctx, client, interceptedBy, protocolError, setupMs));
    if (protocolError) {
      out.set('protocol', {
        outcome: 'fail',
        message: `APF session setup broke: ${protocolError}`,
        evidence: { messages: client.log, ...(client.closed ? { closed: client.closed } : {}) },
        durationMs: setupMs,
      });
      out.set('tunnel-keepalive', notRun('the APF session was not set up', 'protocol'));
      return out;
    }
    out.set('protocol', {
      outcome: 'pass',
      message: `APF ${versionReply?.major}.${versionReply?.minor} version exchange, ${APF_AUTH_SERVICE} and ${APF_PFWD_SERVICE} accepted, tcpip-forward ${forwardPort} accepted in ${setupMs} ms`,
      evidence: { messages: client.log },
      durationMs: setupMs,
    });

    // --- tunnel-keepalive ---
    out.set('tunnel-keepalive', await holdTunnel(ctx, client, timers, dialledAt));
    return out;
  } finally {
    for (const t of timers) clearTimeout(t);
    client.onKeepaliveReply = undefined;
    client.onClosed = undefined;
    channel.socket.destroy();
    channel.tunnel?.socket.destroy();
  }
}

function judgeMtls(
  ctx: KindContext,
  client: ApfClient,
  interceptedBy: string | undefined,
  protocolError: string | undefined,
  ms: number,
): Verdict {
  const ours = ctx.clientCert.subjectCN;
  const verified = client.originInfo?.clientCertCN;
  const evidence: Record<string, unknown> = {
    presentedCN: ours,
    deviceCa: issuerCN(ctx.clientCert.certPem),
    ...(client.originInfo ? { originInfo: client.originInfo } : {}),
  };
  if (verified === ours) {
    return {
      outcome: 'pass',
      message: `the origin verified the device certificate "${ours}" (issued by "${evidence.deviceCa}") end to end`,
      evidence: { ...evidence, originVerifiedCN: verified },
      durationMs: ms,
    };
  }
  const what = client.originInfo
    ? verified
      ? `the origin verified "${verified}", not the device certificate "${ours}"`
      : 'the origin verified no client certificate'
    : `the origin never confirmed the device certificate: ${protocolError ?? 'no report'}`;
  if (interceptedBy) {
    const died = client.originInfo
      ? what
      : `the session died before the origin answered (${protocolError ?? 'no report'})`;
    return interceptionFail(ctx, interceptedBy, died, { ...evidence, sessionError: protocolError }, ms);
  }
  return {
    outcome: 'fail',
    message: what,
    evidence: { ...evidence, ...(protocolError ? { sessionError: protocolError } : {}) },
    durationMs: ms,
  };
}

/**
 * Holds the set-up tunnel for the session, one KEEPALIVE_REQUEST every interval, and judges it:
 * every keep-alive answered with its own cookie and the tunnel up until the agent ends it.
 */
async function holdTunnel(
  ctx: KindContext,
  client: ApfClient,
  timers: Set<NodeJS.Timeout>,
  dialledAt: number,
): Promise<Verdict> {
  const s = ctx.exchange.session ?? {};
  const requiredMs =
    ctx.idleSeconds !== undefined
      ? Math.max(1, Math.round(ctx.idleSeconds * 1000))
      : scaledMs(s.seconds ?? DEFAULT_SESSION_SECONDS, ctx.timeScale);
  const intervalMs = scaledMs(s.keepaliveSeconds ?? DEFAULT_KEEPALIVE_SECONDS, ctx.timeScale);
  const replyDeadlineMs = ctx.timeouts.answerMs;
  const start = performance.now();
  const pending = new Map<number, { n: number; at: number }>();
  const rtts: number[] = [];
  const strangers: number[] = [];
  let sent = 0;
  let overdue: string | undefined;

  const setupClosed = client.closed;
  client.onKeepaliveReply = (cookie) => {
    const p = pending.get(cookie);
    if (!p) strangers.push(cookie);
    else {
      pending.delete(cookie);
      rtts.push(Math.round(performance.now() - p.at));
    }
  };

  const ended = await new Promise<'complete' | 'closed' | 'overdue'>((resolve) => {
    let settled = false;
    const finish = (why: 'complete' | 'closed' | 'overdue') => {
      if (settled) return;
      settled = true;
      for (const t of timers) clearTimeout(t);
      timers.clear();
      resolve(why);
    };
    const later = (ms: number, f: () => void) => {
      const t = setTimeout(() => {
        timers.delete(t);
        f();
      }, ms);
      timers.add(t);
    };
    if (setupClosed) return finish('closed');
    client.onClosed = () => finish('closed');
    const sendNext = (k: number) => {
      if (settled) return;
      const cookie = randomBytes(4).readUInt32BE(0);
      pending.set(cookie, { n: k, at: performance.now() });
      sent++;
      client.send({ type: 'keepalive-request', cookie });
      later(replyDeadlineMs, () => {
        if (pending.has(cookie)) {
          overdue = `keep-alive #${k} (cookie ${hexCookie(cookie)}) was not answered within ${replyDeadlineMs} ms`;
          finish('overdue');
        }
      });
      const due = (k + 1) * intervalMs;
      if (due < requiredMs) later(Math.max(0, start + due - performance.now()), () => sendNext(k + 1));
    };
    if (intervalMs < requiredMs) later(intervalMs, () => sendNext(1));
    // Node's timers run on the loop's cached clock and can fire a millisecond early: the session
    // is complete only when the tunnel has really been held for requiredMs (CI once saw 1499 of 1500).
    const complete = () => {
      const left = start + requiredMs - performance.now();
      if (left > 0) later(Math.ceil(left), complete);
      else finish('complete');
    };
    later(requiredMs, complete);
  });
  const sessionEndMs = since(start);

  // Let the last keep-alives come back (each within its deadline), then hang up like the firmware.
  let drainError: string | undefined;
  if (ended === 'complete' && pending.size) {
    await client
      .waitUntil(
        () => (pending.size === 0 ? true : undefined),
        replyDeadlineMs,
        'the last keep-alive replies',
      )
      .catch((err) => {
        drainError = errorMessage(err);
      });
  }
  const closedEarly = ended === 'closed' || (drainError !== undefined && client.closed !== undefined);
  const closedAtMs = client.closed
    ? Math.max(0, Math.round(client.closed.atMs - (start - client.t0)))
    : undefined;
  const lastedMs = closedEarly && closedAtMs !== undefined ? closedAtMs : sessionEndMs;
  if (!client.closed) client.end();

  const answered = rtts.length;
  const closedBy = !closedEarly ? 'agent' : client.disconnectReason !== undefined ? 'origin' : 'proxy';
  const closeDetail = !closedEarly
    ? 'the agent sent APF DISCONNECT at the end of the session'
    : client.disconnectReason !== undefined
      ? `the origin sent APF DISCONNECT (reason ${client.disconnectReason})`
      : `the connection ${client.closed?.how === 'error' ? `failed (${client.closed.error})` : 'ended'} without the APF DISCONNECT the origin sends before it closes`;
  const evidence: Record<string, unknown> = {
    requiredSeconds: requiredMs / 1000,
    requiredMs,
    ...(ctx.idleSeconds !== undefined ? { idleSecondsOverride: ctx.idleSeconds } : {}),
    intervalMs,
    replyDeadlineMs,
    lastedMs,
    keepalives: {
      sent,
      answered,
      ...(rtts.length ? { maxRoundTripMs: Math.max(...rtts) } : {}),
      ...(strangers.length ? { unknownCookies: strangers.map(hexCookie) } : {}),
    },
    closedBy,
    closeDetail,
    ...(closedEarly && closedAtMs !== undefined
      ? {
          closedAtMs,
          // when and after what silence it ended (hold-relative), for the proxy's timers
          ending: {
            atMs: closedAtMs,
            lastTrafficAtMs: Math.max(0, Math.round((client.log.at(-1)?.atMs ?? 0) - (start - client.t0))),
            sinceDialMs: Math.round(closedAtMs + start - dialledAt),
            how: closeDetail,
          },
        }
      : {}),
  };
  const summary = `${answered} of ${sent} keep-alives answered (one every ${intervalMs} ms)`;
  if (closedEarly) {
    return {
      outcome: 'fail',
      message: `the tunnel closed after ${lastedMs} ms of the ${requiredMs} ms session, closed by the ${closedBy}: ${closeDetail}; ${summary}`,
      evidence,
      durationMs: lastedMs,
    };
  }
  if (overdue || drainError) {
    return {
      outcome: 'fail',
      message: `${overdue ?? drainError}; ${summary}`,
      evidence,
      durationMs: lastedMs,
    };
  }
  if (strangers.length) {
    return {
      outcome: 'fail',
      message: `a keep-alive reply carried cookie ${hexCookie(strangers[0] ?? 0)}, which the agent never sent; ${summary}`,
      evidence,
      durationMs: lastedMs,
    };
  }
  return {
    outcome: 'pass',
    message: `the tunnel stayed up for the whole ${requiredMs} ms session; ${sent ? `every keep-alive answered: ${summary}` : `no keep-alive was due (interval ${intervalMs} ms)`}`,
    evidence,
    durationMs: lastedMs,
  };
}
