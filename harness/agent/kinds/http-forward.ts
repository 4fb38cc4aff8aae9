/**
 * `http-forward`: plain HTTP on port 80 sent to the proxy in absolute form (`GET http://host/...`)
 * and forwarded, not tunnelled: ESET's repository, Symantec LiveUpdate over HTTP.
 *
 * Checks:
 *  - forward: the proxy carried the request to the origin and relayed its answer (a 403/407 from
 *    the proxy itself is quoted);
 *  - payload: bodies arrive unchanged both ways (SHA-256);
 *  - headers: what a forwarding proxy may do and nothing more: end-to-end headers keep their
 *    values (fail otherwise), `Proxy-Authorization` never reaches the origin (fail), the agent's
 *    hop-by-hop headers (Proxy-Connection, TE, Trailer, Upgrade, ...) are not passed on (warn:
 *    most origins ignore them), `Via` and other added headers are allowed and listed. `Connection`
 *    and `Keep-Alive` are not judged: each hop sets its own.
 */
import { randomBytes } from 'node:crypto';
import type { Socket } from 'node:net';
import type { Verdict } from '../../checks/types.ts';
import { errorMessage, rethrowHarness } from '../../errors.ts';
import { type EchoReply, sha256 } from '../../lab/lab.ts';
import { type AuthHandshake, MAX_AUTH_ROUNDS, redactAuthorization } from '../../route/auth.ts';
import { labJson, reportBody } from '../bodies.ts';
import { type HttpExchange, TunnelHttpClient } from '../http.ts';
import { connectToProxy, type TcpConnectError } from '../tunnel.ts';
import { type ExchangeKind, type KindContext, type KindVerdicts, notRun, since } from './types.ts';

const CHECKS = ['forward', 'payload', 'headers'];

/** RFC 9110 §7.6.1 connection-specific fields, plus the legacy Proxy-Connection. */
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
]);

export const httpForwardKind: ExchangeKind = {
  id: 'http-forward',
  options: {
    headers: { $ref: '#/$defs/headers' },
    requests: { $ref: '#/$defs/requests' },
  },
  required: ['requests'],
  forwarded: true,
  checks: () => CHECKS,
  lab: (x) => [{ port: x.port, transport: 'http' }],
  run: runForward,
};

/** Header lines of a raw head, without the request line. */
function headerLines(head: string): Array<[string, string]> {
  return head
    .split('\r\n')
    .slice(1)
    .filter(Boolean)
    .map((l) => {
      const i = l.indexOf(':');
      return [l.slice(0, i).trim(), l.slice(i + 1).trim()] as [string, string];
    });
}

/** Judges one forwarded request head against the rules above; returns the problems found. */
export function judgeForwardedHead(
  sent: string,
  received: string,
  host: string,
): {
  problems: string[];
  warnings: string[];
  added: string[];
  removed: string[];
  leakedProxyAuthorization: boolean;
} {
  const s = headerLines(sent);
  const r = headerLines(received);
  const rNames = new Map<string, string[]>();
  for (const [k, v] of r) rNames.set(k.toLowerCase(), [...(rNames.get(k.toLowerCase()) ?? []), v]);
  const sNames = new Set(s.map(([k]) => k.toLowerCase()));
  const listedInConnection = new Set(
    s
      .filter(([k]) => k.toLowerCase() === 'connection')
      .flatMap(([, v]) => v.split(','))
      .map((t) => t.trim().toLowerCase()),
  );
  const problems: string[] = [];
  const warnings: string[] = [];
  const removed: string[] = [];
  for (const [k, v] of s) {
    const name = k.toLowerCase();
    const hop = HOP_BY_HOP.has(name) || listedInConnection.has(name);
    const got = rNames.get(name);
    if (hop) {
      if (name === 'proxy-authorization') continue; // judged below
      if (name === 'connection' || name === 'keep-alive') continue; // every hop sets its own
      if (got) warnings.push(`the agent's hop-by-hop header ${k} was passed on to the origin`);
      else removed.push(k);
      continue;
    }
    if (name === 'host') {
      if (!got?.some((g) => g.toLowerCase() === host.toLowerCase()))
        problems.push(
          `Host arrived as ${JSON.stringify(got?.join(', ') ?? '(missing)')}, sent ${JSON.stringify(v)}`,
        );
      continue;
    }
    if (!got) problems.push(`end-to-end header ${k} was removed`);
    else if (!got.includes(v))
      problems.push(`${k} sent as ${JSON.stringify(v)}, arrived as ${JSON.stringify(got.join(', '))}`);
  }
  const leakedProxyAuthorization = rNames.has('proxy-authorization');
  if (leakedProxyAuthorization)
    problems.push('Proxy-Authorization reached the origin (the proxy must consume it)');
  const added = [...rNames.keys()].filter((n) => !sNames.has(n));
  const requestLine = received.split('\r\n')[0] ?? '';
  if (!/^[A-Z]+ \/\S* HTTP\/1\.[01]$/.test(requestLine))
    problems.push(`request line arrived as ${JSON.stringify(requestLine)} (origin-form expected)`);
  return { problems, warnings, added, removed, leakedProxyAuthorization };
}

async function runForward(ctx: KindContext): Promise<KindVerdicts> {
  const out: KindVerdicts = new Map();
  if (ctx.route.via !== 'proxy') throw new Error(`http-forward needs a proxy route, not ${ctx.route.label}`);
  const proxy = ctx.route.proxy;
  const requests = ctx.exchange.requests ?? [];
  const origin = ctx.port === 80 ? `http://${ctx.host}` : `http://${ctx.host}:${ctx.port}`;
  // A fresh query per request: the origin must see every request (a cache hit is not a forward).
  const nonce = randomBytes(4).toString('hex');
  const t0 = performance.now();
  const steps: Array<Record<string, unknown>> = [];
  const headerSteps: Array<Record<string, unknown>> = [];
  let forwardBad: Verdict | undefined;
  let payloadBad: string | undefined;
  let headersBad: { message: string; leaked: boolean } | undefined;
  let headersWarn: string | undefined;
  try {
    for (const [i, req] of requests.entries()) {
      const body =
        req.bytes !== undefined && req.method !== 'GET' ? reportBody(req.name, req.bytes) : undefined;
      const sep = req.path.includes('?') ? '&' : '?';
      const path = `${origin}${req.path}${sep}pc=${nonce}-${i}`;
      const headers: Array<[string, string]> = [
        ['Host', ctx.port === 80 ? ctx.host : `${ctx.host}:${ctx.port}`],
      ];
      if (ctx.exchange.userAgent) headers.push(['User-Agent', ctx.exchange.userAgent]);
      for (const h of ctx.exchange.headers ?? []) headers.push(h);
      headers.push(['Proxy-Connection', 'Keep-Alive']);
      const handshake = proxy.auth?.start({ method: req.method, uri: path, proxyHost: proxy.host });
      const authorization = handshake?.preemptive();
      if (authorization) headers.push(['Proxy-Authorization', authorization]);
      // one connection per request: the agent reconnects whenever the proxy closes, as it may
      let socket: Socket;
      try {
        socket = await connectToProxy(proxy, ctx.timeouts.connectMs);
      } catch (err) {
        const code = (err as TcpConnectError).code;
        forwardBad = {
          outcome: 'fail',
          message: errorMessage(err),
          // the proxy took no TCP connection: the route policies read this as "unreachable"
          evidence: {
            proxy: `${proxy.host}:${proxy.port}`,
            afterRequests: steps.length,
            ...(code ? { errorCode: code } : {}),
          },
          durationMs: since(t0),
        };
        break;
      }
      const client = new TunnelHttpClient(socket, origin, ctx.timeouts.requestMs);
      const send = (h: Array<[string, string]>) =>
        client.request({ method: req.method, path, headers: h, ...(body ? { body } : {}) });
      const res = await send(headers)
        .then((first) => answer407(first, handshake, headers, send))
        .finally(() => client.close());
      const sentHead = res.sentHead.toString('latin1');
      const redactedHead = redactAuthorization(sentHead);
      const declared = String(res.headers['x-proxycheck-sha256'] ?? '');
      const fromOrigin = res.headers['x-proxycheck-lab'] !== undefined;
      if (res.status !== 200 || !fromOrigin) {
        const via = String(res.headers.via ?? '');
        const squidError = String(res.headers['x-squid-error'] ?? '');
        forwardBad = {
          outcome: 'fail',
          message: `${req.method} ${origin}${req.path} through the proxy answered ${res.status}${squidError ? ` (${squidError})` : ''}${fromOrigin ? '' : ', from the proxy itself, not the origin'}`,
          evidence: {
            request: redactedHead,
            statusCode: res.status,
            ...(squidError ? { squidError } : {}),
            ...(via ? { via } : {}),
            answerHeaders: res.headers,
          },
          durationMs: since(t0),
        };
        break;
      }
      const step: Record<string, unknown> = {
        request: req.name,
        status: res.status,
        responseDeclaredSha256: declared,
        responseReceivedSha256: res.bodySha256,
      };
      if (declared !== res.bodySha256 && !payloadBad)
        payloadBad = `${req.name}: response body SHA-256 ${res.bodySha256.slice(0, 16)}…, not the ${declared.slice(0, 16)}… the origin sent`;
      if (
        String(res.headers['content-type'] ?? '').startsWith('application/json') &&
        !req.path.startsWith('/source')
      ) {
        const echo = labJson<EchoReply>(res.body, declared, `${req.name}: the echo answer`);
        const sentSha = sha256(body ?? Buffer.alloc(0));
        step.bytes = body?.length ?? 0;
        step.sentSha256 = sentSha;
        step.originSha256 = echo.bodySha256;
        if (echo.bodySha256 !== sentSha && !payloadBad)
          payloadBad = `${req.name}: origin received body SHA-256 ${echo.bodySha256.slice(0, 16)}…, not ${sentSha.slice(0, 16)}…`;
        const received = Buffer.from(echo.rawHead, 'base64').toString('latin1');
        const judged = judgeForwardedHead(sentHead, received, ctx.host);
        headerSteps.push({
          request: req.name,
          sent: redactedHead,
          received: redactAuthorization(received),
          added: judged.added,
          removedHopByHop: judged.removed,
          ...(judged.problems.length ? { problems: judged.problems } : {}),
          ...(judged.warnings.length ? { warnings: judged.warnings } : {}),
        });
        if (judged.warnings.length && !headersWarn)
          headersWarn = `${req.name}: ${judged.warnings.join('; ')}`;
        if (judged.problems.length && !headersBad)
          headersBad = {
            message: `${req.name}: ${judged.problems.join('; ')}`,
            leaked: judged.leakedProxyAuthorization,
          };
      } else {
        step.bytes = res.body.length;
      }
      steps.push(step);
    }
  } catch (err) {
    rethrowHarness(err);
    forwardBad ??= {
      outcome: 'fail',
      message: `forwarded exchange broke after ${steps.length} of ${requests.length} requests: ${errorMessage(err)}`,
      evidence: { steps },
      durationMs: since(t0),
    };
  }
  const ms = since(t0);
  if (forwardBad) {
    out.set('forward', forwardBad);
    out.set('payload', notRun('the proxy did not forward the request', 'forward'));
    out.set('headers', notRun('the proxy did not forward the request', 'forward'));
    return out;
  }
  out.set('forward', {
    outcome: 'pass',
    message: `${requests.length} request(s) forwarded to ${origin} and answered by the origin`,
    evidence: { requests: steps.length },
    durationMs: ms,
  });
  const bytes = steps.reduce((a, s) => a + Number(s.bytes ?? 0), 0);
  out.set(
    'payload',
    payloadBad
      ? { outcome: 'fail', message: payloadBad, evidence: { steps }, durationMs: ms }
      : {
          outcome: 'pass',
          message: `${steps.length} request(s), ${bytes} body bytes, every SHA-256 equal`,
          evidence: { steps },
          durationMs: ms,
        },
  );
  out.set(
    'headers',
    headersBad
      ? {
          outcome: 'fail',
          message: headersBad.message,
          evidence: { steps: headerSteps, ...(headersBad.leaked ? { leakedProxyAuthorization: true } : {}) },
          durationMs: ms,
        }
      : headersWarn
        ? {
            outcome: 'warn',
            message: headersWarn,
            evidence: { steps: headerSteps },
            durationMs: ms,
            remediation:
              "The proxy passes the agent's hop-by-hop headers on to the origin; a forwarding proxy must remove them (RFC 9110 §7.6.1). Most origins ignore them: fix it in the proxy's header handling when an origin does not.",
          }
        : headerSteps.length
          ? {
              outcome: 'pass',
              message: `end-to-end headers kept, hop-by-hop removed${addedSummary(headerSteps)}`,
              evidence: { steps: headerSteps },
              durationMs: ms,
            }
          : {
              outcome: 'skip',
              message: 'no request in this exchange echoes its head',
              evidence: {},
              durationMs: 0,
              notApplicable: true,
            },
  );
  return out;
}

function addedSummary(steps: Array<Record<string, unknown>>): string {
  const added = new Set(steps.flatMap((s) => (s.added as string[]) ?? []));
  return added.size ? `; the proxy added ${[...added].join(', ')}` : '';
}

/**
 * The 407 dance of a forwarded request: answered round by round on the same connection while the
 * agent's handshake has an answer (harness/route/auth.ts); the last answer stands otherwise.
 */
async function answer407(
  first: HttpExchange,
  handshake: AuthHandshake | undefined,
  headers: Array<[string, string]>,
  send: (h: Array<[string, string]>) => Promise<HttpExchange>,
): Promise<HttpExchange> {
  let res = first;
  for (let round = 1; handshake && res.status === 407 && round < MAX_AUTH_ROUNDS; round++) {
    const raw = res.headers['proxy-authenticate'];
    const challenges = Array.isArray(raw) ? raw : raw ? [raw] : [];
    const value = await handshake.answer(challenges, round);
    if (!value) break;
    const next: Array<[string, string]> = [
      ...headers.filter(([k]) => !/^proxy-authorization$/i.test(k)),
      ['Proxy-Authorization', value],
    ];
    try {
      res = await send(next);
    } catch {
      break; // the proxy closed between rounds: its 407 stands
    }
  }
  return res;
}
