/**
 * Replays one profile exchange (an agent talking to one endpoint) through a proxy and judges it
 * with the checks connect, tls-interception, pinning, payload and headers.
 */

import type { Verdict } from '../checks/definitions.ts';
import { errorMessage } from '../errors.ts';
import { type EchoReply, sha256 as sha, sourceBytes } from '../lab/lab.ts';
import type { CatalogEndpoint, ProfileExchange } from '../scenarios.ts';
import { TunnelHttpClient } from './http.ts';
import { openTunnel, type ProxyAddress, startTls } from './tunnel.ts';

export interface ExchangeContext {
  proxy: ProxyAddress;
  host: string;
  port: number;
  row: CatalogEndpoint;
  exchange: ProfileExchange;
  /** The agent's trust store (PEM): the lab root, plus the corporate CA if the enterprise deployed it. */
  trust: string[];
  /** Subject CN of the issuer the origin's certificate really has. */
  originIssuerCN: string;
  /** base64 SHA-256 SPKI of the origin's real key: what a pinned agent pins. */
  originPins: string[];
  timeouts: { connectMs: number; answerMs: number; tlsMs: number; requestMs: number };
}

export type ExchangeVerdicts = Map<string, Verdict>;

const since = (t0: number) => Math.round(performance.now() - t0);

function notRun(reason: string, dependsOn: string, durationMs = 0): Verdict {
  return { outcome: 'dependency_fail', message: `not run: ${reason}`, evidence: { dependsOn }, durationMs };
}

export async function runExchange(ctx: ExchangeContext): Promise<ExchangeVerdicts> {
  const out: ExchangeVerdicts = new Map();
  const target = `${ctx.host}:${ctx.port}`;

  // connect
  let t0 = performance.now();
  const tunnel = await openTunnel({
    proxy: ctx.proxy,
    target: { host: ctx.host, port: ctx.port },
    connectTimeoutMs: ctx.timeouts.connectMs,
    answerTimeoutMs: ctx.timeouts.answerMs,
    ...(ctx.exchange.userAgent ? { userAgent: ctx.exchange.userAgent } : {}),
  });
  const answerEvidence = tunnel.answer
    ? {
        statusLine: tunnel.answer.statusLine,
        statusCode: tunnel.answer.statusCode,
        answerHead: tunnel.answer.raw.toString('latin1'),
        gluedBytes: tunnel.answer.extra.length,
      }
    : {};
  const common = { request: tunnel.requestHead, timings: tunnel.timings };
  if (!tunnel.ok) {
    out.set('connect', {
      outcome: 'fail',
      message: tunnel.answer
        ? `CONNECT ${target} answered "${tunnel.answer.statusLine}", not 200`
        : `CONNECT ${target} failed: ${tunnel.error}`,
      evidence: {
        ...common,
        ...answerEvidence,
        ...(tunnel.errorCode ? { errorCode: tunnel.errorCode } : {}),
      },
      durationMs: since(t0),
    });
    for (const c of ['tls-interception', 'pinning', 'payload', 'headers'])
      out.set(c, notRun('the CONNECT tunnel was not established', 'connect'));
    return out;
  }
  out.set('connect', {
    outcome: 'pass',
    message: `CONNECT ${target} answered "${tunnel.answer.statusLine}"`,
    evidence: { ...common, ...answerEvidence },
    durationMs: since(t0),
  });

  // TLS, judged by the agent
  t0 = performance.now();
  const pinned = ctx.row.pinned || ctx.row.mustNotInspect;
  const tls = await startTls(tunnel.socket, {
    servername: ctx.host,
    ca: ctx.trust,
    ...(pinned ? { pins: ctx.originPins } : {}),
    timeoutMs: ctx.timeouts.tlsMs,
  });
  const tlsMs = since(t0);
  const leaf = tls.chain[0];
  const tlsEvidence = {
    handshakeMs: tls.handshakeMs,
    chain: tls.chain.map((c) => ({ subject: c.subjectCN, issuer: c.issuerCN, spkiSha256: c.spkiSha256 })),
    authorized: tls.authorized,
    ...(tls.authorizationError ? { authorizationError: tls.authorizationError } : {}),
  };
  if (!leaf) {
    const msg = tls.error ?? 'no certificate presented';
    out.set('tls-interception', {
      outcome: 'fail',
      message: `TLS through the tunnel failed: ${msg}`,
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
        : skipPin(),
    );
    out.set('payload', notRun('no TLS session', 'tls-interception'));
    out.set('headers', notRun('no TLS session', 'tls-interception'));
    return out;
  }
  const intercepted = leaf.issuerCN !== ctx.originIssuerCN || !ctx.originPins.includes(leaf.spkiSha256);
  if (!intercepted) {
    out.set('tls-interception', {
      outcome: 'pass',
      message: `certificate for ${ctx.host} issued by "${leaf.issuerCN}", the origin's own`,
      evidence: tlsEvidence,
      durationMs: tlsMs,
    });
  } else {
    const what = `TLS intercepted: certificate for ${ctx.host} re-signed by "${leaf.issuerCN}", not "${ctx.originIssuerCN}"`;
    out.set('tls-interception', {
      outcome: ctx.row.mustNotInspect ? 'fail' : 'warn',
      message: ctx.row.mustNotInspect ? `${what}; the vendor says this host must not be inspected` : what,
      evidence: {
        ...tlsEvidence,
        reSignedBy: leaf.issuer,
        expectedIssuer: ctx.originIssuerCN,
        source: ctx.row.source,
      },
      durationMs: tlsMs,
    });
  }
  if (!pinned) {
    out.set('pinning', skipPin());
  } else if (tls.pinMatched) {
    out.set('pinning', {
      outcome: 'pass',
      message: `presented key matches the pin (${leaf.spkiSha256})`,
      evidence: { expectedSpki: ctx.originPins, presentedSpki: leaf.spkiSha256 },
      durationMs: 0,
    });
  } else {
    out.set('pinning', {
      outcome: 'fail',
      message: `pinned agent fails closed: expected key ${ctx.originPins[0]}, presented ${leaf.spkiSha256} (issued by "${leaf.issuerCN}")`,
      evidence: {
        expectedSpki: ctx.originPins,
        presentedSpki: leaf.spkiSha256,
        presentedIssuer: leaf.issuer,
      },
      durationMs: 0,
    });
  }
  if (!tls.socket) {
    const by = tls.pinMatched === false ? 'pinning' : 'tls-interception';
    out.set('payload', notRun(`the agent refused the TLS session (${tls.refused})`, by));
    out.set('headers', notRun(`the agent refused the TLS session (${tls.refused})`, by));
    return out;
  }

  // HTTP exchange inside the verified session
  const client = new TunnelHttpClient(tls.socket, `https://${target}`, ctx.timeouts.requestMs);
  const payloadSteps: Array<Record<string, unknown>> = [];
  const headerSteps: Array<Record<string, unknown>> = [];
  let payloadBad: string | undefined;
  let headersBad: string | undefined;
  let error: string | undefined;
  t0 = performance.now();
  try {
    for (const req of ctx.exchange.requests) {
      const body = req.bytes !== undefined ? reportBody(req.name, req.bytes) : undefined;
      const headers: Array<[string, string]> = [];
      if (ctx.exchange.userAgent) headers.push(['User-Agent', ctx.exchange.userAgent]);
      for (const h of ctx.exchange.headers ?? []) headers.push(h);
      const res = await client.request({
        method: req.method,
        path: req.path,
        headers,
        ...(body ? { body } : {}),
      });
      const echo = JSON.parse(res.body.toString('utf8')) as EchoReply;
      const sentSha = body ? sha(body) : sha(Buffer.alloc(0));
      const declared = String(res.headers['x-proxycheck-sha256'] ?? '');
      const up = echo.bodySha256 === sentSha;
      const down = declared === res.bodySha256;
      payloadSteps.push({
        request: req.name,
        bytes: body?.length ?? 0,
        sentSha256: sentSha,
        originSha256: echo.bodySha256,
        responseDeclaredSha256: declared,
        responseReceivedSha256: res.bodySha256,
      });
      if (!payloadBad && !up)
        payloadBad = `${req.name}: origin received body SHA-256 ${echo.bodySha256.slice(0, 16)}…, not ${sentSha.slice(0, 16)}… (${echo.bodyBytes} of ${body?.length ?? 0} bytes)`;
      if (!payloadBad && !down)
        payloadBad = `${req.name}: response body SHA-256 ${res.bodySha256.slice(0, 16)}…, not the ${declared.slice(0, 16)}… the origin sent`;
      const received = Buffer.from(echo.rawHead, 'base64');
      const same = received.equals(res.sentHead);
      headerSteps.push({
        request: req.name,
        sent: res.sentHead.toString('latin1'),
        ...(same ? {} : { received: received.toString('latin1') }),
      });
      if (!headersBad && !same)
        headersBad = `${req.name}: ${firstDifference(res.sentHead.toString('latin1'), received.toString('latin1'))}`;
    }
  } catch (err) {
    error = errorMessage(err);
  } finally {
    await client.close();
  }
  const ms = since(t0);
  const n = ctx.exchange.requests.length;
  if (error && payloadSteps.length < n) {
    const msg = `exchange broke after ${payloadSteps.length} of ${n} requests: ${error}`;
    out.set('payload', { outcome: 'fail', message: msg, evidence: { steps: payloadSteps }, durationMs: ms });
    out.set(
      'headers',
      headersBad
        ? { outcome: 'fail', message: headersBad, evidence: { steps: headerSteps }, durationMs: ms }
        : {
            ...notRun(`the exchange broke (${error})`, 'payload', ms),
            evidence: { dependsOn: 'payload', steps: headerSteps },
          },
    );
    return out;
  }
  const total = payloadSteps.reduce((a, s) => a + Number(s.bytes), 0);
  out.set(
    'payload',
    payloadBad
      ? { outcome: 'fail', message: payloadBad, evidence: { steps: payloadSteps }, durationMs: ms }
      : {
          outcome: 'pass',
          message: `${n} requests, ${total} body bytes up, every SHA-256 equal in both directions`,
          evidence: { steps: payloadSteps },
          durationMs: ms,
        },
  );
  out.set(
    'headers',
    headersBad
      ? { outcome: 'fail', message: headersBad, evidence: { steps: headerSteps }, durationMs: ms }
      : {
          outcome: 'pass',
          message: `${n} request heads arrived byte-identical`,
          evidence: { steps: headerSteps },
          durationMs: ms,
        },
  );
  return out;
}

function skipPin(): Verdict {
  return {
    outcome: 'skip',
    message: 'the agent does not pin this endpoint',
    evidence: {},
    durationMs: 0,
    notApplicable: true,
  };
}

/** A JSON report body of exactly `bytes` bytes, deterministic per request name. */
export function reportBody(name: string, bytes: number): Buffer {
  const prefix = Buffer.from(`{"report":"${name}","data":"`);
  const suffix = Buffer.from('"}');
  const fill = Math.max(0, bytes - prefix.length - suffix.length);
  const data = Buffer.from(
    sourceBytes(Math.ceil((fill * 3) / 4) + 3)
      .toString('base64')
      .slice(0, fill),
  );
  const body = Buffer.concat([prefix, data, suffix]);
  return body.length > bytes ? body.subarray(0, bytes) : body;
}

/** `line 3: sent "X-A: 1", received "x-a: 1"` */
export function firstDifference(sent: string, received: string): string {
  const a = sent.split('\r\n');
  const b = received.split('\r\n');
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    if (a[i] !== b[i]) {
      return `head line ${i + 1} sent as ${JSON.stringify(a[i] ?? '(nothing)')}, arrived as ${JSON.stringify(b[i] ?? '(nothing)')}`;
    }
  }
  return 'heads differ';
}
