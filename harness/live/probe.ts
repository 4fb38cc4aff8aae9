/**
 * `probe`: what `validate --origins live` sends to a real endpoint, nothing beyond what proves the
 * path works (one exchange kind of the one runner, harness/runner/run.ts):
 *
 *  - https, tls, mqtts: CONNECT host:port, then a TLS handshake with SNI; https adds one `HEAD /`
 *    inside the verified session (the agent sends nothing on a session it refused);
 *  - tcp: CONNECT only; http (port 80 style): one forwarded absolute-form `HEAD http://host/`
 *    (check `forward`);
 *  - udp cannot go through an HTTP proxy: skipped with that reason.
 *
 * The certificate is judged by the run's trust policy (public roots plus --trust-ca, live/live.ts).
 * A row whose host needs a value the user did not give is skipped with the flag that gives it.
 */
import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { openChannel } from '../agent/channel.ts';
import type { ExchangeKind, KindContext, KindVerdicts } from '../agent/kinds/types.ts';
import { since } from '../agent/kinds/types.ts';
import { type ConnectAnswer, connectToProxy, parseAnswerHead } from '../agent/tunnel.ts';
import { answerEvidence } from '../checks/connect.ts';
import { notApplicable, PROXY_CREDENTIALS_REMEDY, type Verdict } from '../checks/types.ts';
import { errorMessage } from '../errors.ts';
import { redactAuthorization } from '../route/auth.ts';
import { VERSION } from '../util/pkg.ts';

const TRANSPORTS = ['https', 'http', 'tls', 'tcp', 'mqtts', 'udp'];

export const probeKind: ExchangeKind = {
  id: 'probe',
  options: {
    transport: { enum: TRANSPORTS, description: "the catalog row's transport" },
    missing: { type: 'array', items: { type: 'string' }, description: 'flags the row needs and did not get' },
  },
  required: ['transport'],
  checks: (x) => [x.transport === 'http' ? 'forward' : 'connect', 'tls-interception', 'pinning'],
  lab: (x) => {
    const t = x.transport;
    if (t === 'udp') return [];
    if (t === 'http') return [{ port: x.port, transport: 'http' }];
    if (t === 'tcp') return [{ port: x.port, transport: 'tcp', service: 'echo' }];
    return [
      {
        port: x.port,
        transport: t === 'https' ? 'https' : 'tls',
        ...(t === 'https' ? {} : { service: 'echo' }),
      },
    ];
  },
  run: probe,
};

const notPinned = 'the catalog does not say an agent pins this endpoint';

async function probe(ctx: KindContext): Promise<KindVerdicts> {
  const out: KindVerdicts = new Map();
  const x = ctx.exchange;
  const hostPort = `${ctx.host}:${ctx.port}`;
  const skipAll = (why: string) => {
    for (const c of probeKind.checks(x)) out.set(c, notApplicable(why));
    return out;
  };
  if (x.missing?.length) return skipAll(`needs ${x.missing.join(' and ')} for ${x.host}; not checked`);
  if (x.transport === 'udp')
    return skipAll(
      `udp/${ctx.port} cannot pass an HTTP proxy: the agents need a direct route to ${hostPort} (not checked here)`,
    );
  if (!ctx.row.pinned) out.set('pinning', notApplicable(notPinned));
  if (x.transport === 'http') {
    const t0 = performance.now();
    out.set('forward', judgeForward(ctx, await forwardHead(ctx), t0));
    out.set('tls-interception', notApplicable('plain HTTP: no TLS session to inspect'));
    out.set('pinning', notApplicable('plain HTTP: no TLS session to inspect'));
    return out;
  }
  const tls = x.transport !== 'tcp';
  if (!tls) {
    const why = `${x.transport}: the agent's protocol is not TLS; only the tunnel is checked`;
    out.set('tls-interception', notApplicable(why));
    out.set('pinning', notApplicable(why));
  }
  const channel = await openChannel(ctx, out, {
    dependents: [],
    tls,
    pin: ctx.row.pinned,
    reportPinning: ctx.row.pinned,
  });
  if (!channel) return out;
  const connect = out.get('connect') as Verdict;
  if (x.transport === 'https') {
    const h = await headOverTls(channel.socket as TLSSocket, ctx);
    connect.evidence = {
      ...connect.evidence,
      insideTunnel: h.answer ? { request: 'HEAD /', statusLine: h.answer.statusLine } : { error: h.error },
    };
    if (!h.answer) {
      connect.outcome = 'fail';
      connect.message = `${connect.message} and TLS was verified, but ${h.error}`;
      connect.remediation = `The proxy opened the tunnel but did not carry the request inside it: make it relay the CONNECT tunnel to ${hostPort} both ways, untouched.`;
    } else {
      connect.message += `; HEAD / inside the verified session answered "${h.answer.statusLine}"`;
    }
  } else channel.socket.destroy();
  return out;
}

interface HeadResult {
  answer?: ConnectAnswer;
  error?: string;
  errorCode?: string;
}

/** Reads one HTTP answer head from `socket` (deadline named in the error), then closes it. */
function readHead(socket: Socket | TLSSocket, what: string, timeoutMs: number): Promise<HeadResult> {
  return new Promise((resolve) => {
    let buf = Buffer.alloc(0);
    let settled = false;
    const timer = setTimeout(
      () => done({ error: `${what}: no answer within ${timeoutMs} ms`, errorCode: 'PC_DEADLINE' }),
      timeoutMs,
    );
    function done(r: HeadResult): void {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.removeListener('data', onData);
      socket.destroy();
      resolve(r);
    }
    function onData(d: Buffer): void {
      buf = Buffer.concat([buf, d]);
      const idx = buf.indexOf('\r\n\r\n');
      if (idx >= 0) done({ answer: parseAnswerHead(Buffer.from(buf.subarray(0, idx + 4)), Buffer.alloc(0)) });
      else if (buf.length > 32 * 1024) done({ error: `${what}: answer head exceeds 32 KiB` });
    }
    socket.on('data', onData);
    socket.once('error', (err) =>
      done({ error: `${what}: ${errorMessage(err)}`, errorCode: (err as NodeJS.ErrnoException).code }),
    );
    socket.once('close', () =>
      done({ error: `${what}: connection closed before an answer`, errorCode: 'PC_CLOSED' }),
    );
  });
}

function authority(host: string, port: number, defaultPort: number): string {
  return port === defaultPort ? host : `${host}:${port}`;
}

/** One forwarded absolute-form `HEAD http://host/` through the proxy (plain-HTTP rows). */
async function forwardHead(ctx: KindContext): Promise<HeadResult & { request: string }> {
  if (ctx.route.via !== 'proxy')
    throw new Error(`a forwarded HEAD needs a proxy route, not ${ctx.route.label}`);
  const proxy = ctx.route.proxy;
  const hostPort = authority(ctx.host, ctx.port, 80);
  const head = [
    `HEAD http://${hostPort}/ HTTP/1.1`,
    `Host: ${hostPort}`,
    `User-Agent: proxycheck/${VERSION}`,
  ];
  const authorization = proxy.auth
    ?.start({ method: 'HEAD', uri: `http://${hostPort}/`, proxyHost: proxy.host })
    .preemptive();
  if (authorization) head.push(`Proxy-Authorization: ${authorization}`);
  head.push('Connection: close');
  const raw = `${head.join('\r\n')}\r\n\r\n`;
  const request = redactAuthorization(raw);
  let socket: Socket;
  try {
    socket = await connectToProxy(proxy, ctx.timeouts.connectMs);
  } catch (err) {
    return { error: errorMessage(err), request };
  }
  socket.write(raw);
  return {
    ...(await readHead(socket, `HEAD http://${hostPort}/ through the proxy`, ctx.timeouts.answerMs)),
    request,
  };
}

function judgeForward(ctx: KindContext, r: HeadResult & { request: string }, t0: number): Verdict {
  const target = authority(ctx.host, ctx.port, 80);
  const evidence = {
    request: r.request,
    ...answerEvidence(r.answer),
    ...(r.errorCode ? { errorCode: r.errorCode } : {}),
  };
  const base = { evidence, durationMs: since(t0) };
  const a = r.answer;
  if (!a) return { ...base, outcome: 'fail', message: `HEAD http://${target}/ failed: ${r.error}` };
  const said = `HEAD http://${target}/ answered "${a.statusLine}"`;
  const proxyError = a.headers.find(([k]) => /^(x-squid-error|proxy-status)$/i.test(k));
  if (a.statusCode === 407)
    return {
      ...base,
      outcome: 'fail',
      message: `${said}: the proxy wants credentials`,
      remediation: PROXY_CREDENTIALS_REMEDY,
    };
  if (proxyError || a.statusCode === 502 || a.statusCode === 503 || a.statusCode === 504) {
    return {
      ...base,
      outcome: 'fail',
      message: `${said}${proxyError ? ` (${proxyError[0]}: ${proxyError[1]})` : ''}: the proxy did not forward it`,
    };
  }
  if (a.statusCode === 403) {
    return {
      ...base,
      outcome: 'warn',
      message: `${said}: the proxy or the origin refused; no proxy error marker in the answer`,
      remediation: `Check whether the proxy refuses http://${target}/ for the agents; if it does, allow it.`,
    };
  }
  return { ...base, outcome: 'pass', message: `${said} (from the origin, through the proxy)` };
}

/** `HEAD /` inside a verified TLS session: proves the tunnel carries traffic both ways. */
function headOverTls(socket: TLSSocket, ctx: KindContext): Promise<HeadResult> {
  const what = `HEAD / to ${ctx.host}:${ctx.port} inside the tunnel`;
  socket.write(
    `HEAD / HTTP/1.1\r\nHost: ${authority(ctx.host, ctx.port, 443)}\r\nUser-Agent: proxycheck/${VERSION}\r\nConnection: close\r\n\r\n`,
  );
  return readHead(socket, what, ctx.timeouts.requestMs);
}
