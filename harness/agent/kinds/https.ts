/**
 * `https`: HTTP/1.1 requests inside a verified TLS tunnel (FlexxAgent reports, downloads, ipify,
 * Symantec allow-list). Checks: connect, tls-interception, pinning, payload, headers (the request
 * head must arrive byte-identical: nothing may touch bytes inside a tunnel).
 */
import { errorMessage, rethrowHarness } from '../../errors.ts';
import { type EchoReply, sha256 as sha } from '../../lab/lab.ts';
import type { ProfileRequest } from '../../scenarios.ts';
import { firstDifference, labJson, reportBody } from '../bodies.ts';
import { openChannel } from '../channel.ts';
import { TunnelHttpClient } from '../http.ts';
import { type ExchangeKind, type KindContext, type KindVerdicts, notRun, scaledMs, since } from './types.ts';

const CHECKS = ['connect', 'tls-interception', 'pinning', 'payload', 'headers'];

export const httpsKind: ExchangeKind = {
  id: 'https',
  options: {
    headers: { $ref: '#/$defs/headers' },
    requests: { $ref: '#/$defs/requests' },
    session: { $ref: '#/$defs/session' },
  },
  required: ['requests'],
  checks: () => CHECKS,
  lab: (x) => [{ port: x.port, transport: 'https' }],
  run: runHttps,
};

async function runHttps(ctx: KindContext): Promise<KindVerdicts> {
  const out: KindVerdicts = new Map();
  const target = `${ctx.host}:${ctx.port}`;
  const channel = await openChannel(ctx, out, { dependents: ['payload', 'headers'] });
  if (!channel) return out;
  const requests: Array<ProfileRequest & { waitMs?: number }> = [
    ...(ctx.exchange.requests ?? []),
    ...sessionUploads(ctx),
  ];
  const client = new TunnelHttpClient(channel.socket, `https://${target}`, ctx.timeouts.requestMs);
  const payloadSteps: Array<Record<string, unknown>> = [];
  const headerSteps: Array<Record<string, unknown>> = [];
  let payloadBad: string | undefined;
  let headersBad: string | undefined;
  let error: string | undefined;
  const t0 = performance.now();
  try {
    for (const req of requests) {
      if (req.waitMs) await sleep(req.waitMs);
      const body =
        req.bytes !== undefined && req.method !== 'GET' ? reportBody(req.name, req.bytes) : undefined;
      const headers: Array<[string, string]> = [];
      if (ctx.exchange.userAgent) headers.push(['User-Agent', ctx.exchange.userAgent]);
      for (const h of ctx.exchange.headers ?? []) headers.push(h);
      const res = await client.request({
        method: req.method,
        path: req.path,
        headers,
        ...(body ? { body } : {}),
      });
      const declared = String(res.headers['x-proxycheck-sha256'] ?? '');
      if (req.path.startsWith('/source')) {
        // a download: the origin declares the SHA-256 of what it sent
        payloadSteps.push({
          request: req.name,
          status: res.status,
          downloadedBytes: res.body.length,
          responseDeclaredSha256: declared,
          responseReceivedSha256: res.bodySha256,
        });
        if (!payloadBad && (res.status !== 200 || declared !== res.bodySha256))
          payloadBad = `${req.name}: downloaded ${res.body.length} bytes with SHA-256 ${res.bodySha256.slice(0, 16)}…, the origin declared ${declared.slice(0, 16) || '(nothing)'}… (status ${res.status})`;
        continue;
      }
      const echo = labJson<EchoReply>(res.body, declared, `${req.name}: the echo answer`);
      const sentSha = body ? sha(body) : sha(Buffer.alloc(0));
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
    rethrowHarness(err);
    error = errorMessage(err);
  } finally {
    await client.close();
  }
  const ms = since(t0);
  const n = requests.length;
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

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * A session of periodic uploads (FlexxAnalyzer: a 35-50 KB file every 5 min): one POST per
 * `uploadEverySeconds` over `seconds`, sizes cycling through `uploadBytes`, on the same tunnel,
 * each preceded by the (scaled) wait.
 */
function sessionUploads(ctx: KindContext): Array<ProfileRequest & { waitMs?: number }> {
  const s = ctx.exchange.session;
  if (!s?.uploadEverySeconds || !s.uploadBytes?.length) return [];
  const seconds = s.seconds ?? s.uploadEverySeconds;
  const count = Math.max(1, Math.floor(seconds / s.uploadEverySeconds));
  return Array.from({ length: count }, (_, i) => ({
    name: `upload-${i + 1}`,
    method: 'POST' as const,
    path: '/echo/analyzer/upload',
    bytes: s.uploadBytes?.[i % (s.uploadBytes?.length ?? 1)] ?? 0,
    waitMs: scaledMs(s.uploadEverySeconds ?? 0, ctx.timeScale),
  }));
}
