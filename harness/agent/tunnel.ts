/**
 * The agent's raw view of a proxy: a CONNECT client over `net` that keeps the exact bytes of the
 * proxy's answer (status line, headers, and any bytes that arrived glued to it) and its timings,
 * answering 407 challenges on the same connection when the agent has credentials. The TLS client
 * the agent then runs over the tunnel is tls.ts.
 */
import net, { type Socket } from 'node:net';
import { errorMessage } from '../errors.ts';
import {
  type AuthDance,
  type AuthRound,
  MAX_AUTH_ROUNDS,
  offeredSchemes,
  type ProxyAuth,
  redactAuthorization,
  redactChallenges,
} from '../route/auth.ts';
import {
  bodyComplete,
  type ConnectAnswer,
  headEnd,
  MAX_REFUSAL_BODY,
  parseAnswerHead,
} from './connect-answer.ts';
import { connectProxyTls, dialProxyTls, type ProxyTls } from './proxy-tls.ts';

export interface ProxyAddress {
  host: string;
  port: number;
  /** How the agent answers the proxy's 407 (harness/route/auth.ts); none: it sends no credentials. */
  auth?: ProxyAuth;
  /**
   * TLS to the proxy (an `https://` proxy): its certificate checked against `ca` for `servername`
   * (default the proxy host; sent as SNI when it is a name), and no ALPN offered, so never h2.
   */
  tls?: ProxyTls;
  /**
   * The agent machine's name service for a proxy given by name (the lab's; undefined: the name
   * does not resolve). Without it a name goes to the operating system's resolver.
   */
  resolve?: (host: string) => string | undefined;
}

/** Where to dial a proxy: its address, or why its name does not resolve. */
export function proxyDialAddress(proxy: ProxyAddress): { address: string } | { error: string } {
  if (!proxy.resolve || net.isIP(proxy.host)) return { address: proxy.host };
  const address = proxy.resolve(proxy.host);
  return address
    ? { address }
    : { error: `proxy host ${proxy.host} does not resolve (ENOTFOUND on the machine's name service)` };
}

export { type ConnectAnswer, headEnd, parseAnswerHead, refusalDetail } from './connect-answer.ts';

export interface TunnelTimings {
  tcpConnectMs?: number;
  connectAnswerMs?: number;
}

export type { AuthDance, AuthRound } from '../route/auth.ts';

export type TunnelResult =
  | {
      ok: true;
      socket: Socket;
      answer: ConnectAnswer;
      requestHead: string;
      timings: TunnelTimings;
      authRounds?: AuthRound[];
      auth?: AuthDance;
    }
  | {
      ok: false;
      /** `answer` when the proxy said no; `error` when we never got an answer. */
      answer?: ConnectAnswer;
      error?: string;
      errorCode?: string;
      requestHead: string;
      timings: TunnelTimings;
      authRounds?: AuthRound[];
      auth?: AuthDance;
    };

export interface TunnelOptions {
  proxy: ProxyAddress;
  target: { host: string; port: number };
  /** Extra CONNECT request headers, in order, as the agent sends them. */
  headers?: Array<[string, string]>;
  connectTimeoutMs?: number;
  answerTimeoutMs?: number;
  userAgent?: string;
}

const MAX_ANSWER_HEAD = 32 * 1024;
/** How long a refusal's body (kept for its quote) is waited for. */
const REFUSAL_BODY_WAIT_MS = 200;

/** Why a TCP connection could not be had: no answer by the deadline, or a socket error. */
export class TcpConnectError extends Error {
  constructor(
    message: string,
    readonly timedOut: boolean,
    /** The socket error's code (ECONNREFUSED, ...); PC_DEADLINE when timed out. */
    readonly code?: string,
  ) {
    super(message);
  }
}

/**
 * A TCP connection with a deadline. Rejects with TcpConnectError: `no answer within N ms`, or the
 * socket error's message. Once connected, later socket errors are left to the socket's new owner.
 */
export function connectTcp(host: string, port: number, deadlineMs: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host, port });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new TcpConnectError(`no answer within ${deadlineMs} ms`, true, 'PC_DEADLINE'));
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
      reject(new TcpConnectError(errorMessage(err), false, (err as NodeJS.ErrnoException).code));
    });
  });
}

/**
 * The agent's TCP connection to its proxy, failing with the words openTunnel uses and the same
 * codes (`code`: ECONNREFUSED, PC_DEADLINE, ENOTFOUND, ...).
 */
export async function connectToProxy(proxy: ProxyAddress, deadlineMs: number): Promise<Socket> {
  const dialAt = proxyDialAddress(proxy);
  if ('error' in dialAt) throw new TcpConnectError(dialAt.error, false, 'ENOTFOUND');
  if (proxy.tls) {
    const r = await connectProxyTls(dialAt.address, proxy.port, proxy.host, proxy.tls, deadlineMs);
    if ('socket' in r) return r.socket;
    throw new TcpConnectError(`proxy ${proxy.host}:${proxy.port}: ${r.error}`, r.timedOut, r.code);
  }
  try {
    return await connectTcp(dialAt.address, proxy.port, deadlineMs);
  } catch (err) {
    const e = err as TcpConnectError;
    const at = `${proxy.host}:${proxy.port}`;
    throw new TcpConnectError(
      e.timedOut ? `TCP connect to proxy ${at}: ${e.message}` : `proxy ${at}: ${e.message}`,
      e.timedOut,
      e.code,
    );
  }
}

/** Opens a CONNECT tunnel. Never throws: failures come back as `{ ok: false }` with what was seen. */
export function openTunnel(opts: TunnelOptions): Promise<TunnelResult> {
  const connectTimeoutMs = opts.connectTimeoutMs ?? 5_000;
  const answerTimeoutMs = opts.answerTimeoutMs ?? 15_000;
  const authority = `${opts.target.host}:${opts.target.port}`;
  const auth = opts.proxy.auth;
  const headFor = (authorization: string | undefined): string => {
    const head: string[] = [`CONNECT ${authority} HTTP/1.1`, `Host: ${authority}`];
    if (opts.userAgent) head.push(`User-Agent: ${opts.userAgent}`);
    if (authorization) head.push(`Proxy-Authorization: ${authorization}`);
    for (const [k, v] of opts.headers ?? []) head.push(`${k}: ${v}`);
    return head.join('\r\n') + '\r\n\r\n';
  };
  const handshake = auth?.start({ method: 'CONNECT', uri: authority, proxyHost: opts.proxy.host });
  let requestHead = headFor(handshake?.preemptive());
  let redacted = redactAuthorization(requestHead);
  const authRounds: AuthRound[] = [];
  const preemptiveScheme = /^Proxy-Authorization: (\S+)/im.exec(requestHead)?.[1];
  /** Body bytes of a 407 still to skip before the next answer on the same connection. */
  let skipBody = 0;

  const dialAt = proxyDialAddress(opts.proxy);
  if ('error' in dialAt)
    return Promise.resolve({
      ok: false,
      error: dialAt.error,
      errorCode: 'ENOTFOUND',
      requestHead: redacted,
      timings: {},
    });
  return new Promise((resolve) => {
    const t0 = performance.now();
    const timings: TunnelTimings = {};
    let settled = false;
    let buf = Buffer.alloc(0);
    let refusal: ConnectAnswer | undefined;
    let answering = false;
    let lastChallenges: string[] = [];
    let usedScheme = preemptiveScheme;
    let closedBetween: string | undefined;
    const pt = opts.proxy.tls;
    const socket = pt
      ? dialProxyTls(dialAt.address, opts.proxy.port, opts.proxy.host, pt)
      : net.connect({ host: dialAt.address, port: opts.proxy.port });
    let timer = setTimeout(
      () =>
        fail(
          `TCP connect to proxy ${opts.proxy.host}:${opts.proxy.port}: no answer within ${connectTimeoutMs} ms`,
          'PC_DEADLINE',
        ),
      connectTimeoutMs,
    );

    function finish(r: TunnelResult): void {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.removeListener('data', onData);
      socket.removeListener('error', onError);
      socket.removeListener('close', onClose);
      // From here on the tunnel's owner (TLS, undici) handles errors; this keeps a late reset from
      // becoming an uncaught exception.
      socket.on('error', () => {});
      resolve(r);
    }
    const rounds = () => ({
      ...(authRounds.length ? { authRounds } : {}),
      ...(auth ? { auth: authEvidence() } : {}),
    });
    /** What the dance was: schemes offered, the one used, the rounds, whether the connection held. */
    function authEvidence(): AuthDance {
      const offered = offeredSchemes(lastChallenges);
      return {
        agentSpeaks: auth?.scheme ?? '',
        offered,
        ...(usedScheme ? { used: usedScheme } : {}),
        rounds: authRounds.length + (preemptiveScheme ? 1 : 0),
        connectionKept: !closedBetween,
        ...(closedBetween ? { closedBetweenRounds: closedBetween } : {}),
        ...(handshake?.refusal ? { agentCannot: handshake.refusal } : {}),
      };
    }
    function fail(error: string, code?: string, answer?: ConnectAnswer): void {
      socket.destroy();
      finish({
        ok: false,
        error,
        ...(code ? { errorCode: code } : {}),
        ...(answer ? { answer } : {}),
        requestHead: redacted,
        timings,
        ...rounds(),
      });
    }
    /** After a 407: answer its challenges on the same connection when the strategy can. */
    async function answerChallenge(answer: ConnectAnswer): Promise<boolean> {
      if (!handshake) return false;
      const challenges = answer.headers.filter(([k]) => /^proxy-authenticate$/i.test(k)).map(([, v]) => v);
      lastChallenges = challenges;
      const closes = answer.headers.some(([k, v]) => /^(proxy-)?connection$/i.test(k) && /close/i.test(v));
      const length = answer.headers.find(([k]) => /^content-length$/i.test(k));
      const chunked = answer.headers.some(([k, v]) => /^transfer-encoding$/i.test(k) && /chunked/i.test(v));
      // a proxy that challenges past what any scheme needs: stop (the check calls it 407 forever)
      if (authRounds.length + (preemptiveScheme ? 1 : 0) >= MAX_AUTH_ROUNDS) return false;
      // a proxy that challenges past what any scheme needs: stop (the check calls it 407 forever)
      if (authRounds.length + (preemptiveScheme ? 1 : 0) >= MAX_AUTH_ROUNDS) return false;
      const value = await handshake.answer(challenges, authRounds.length + 1);
      if (!value) return false;
      if (closes || chunked || answer.httpVersion !== '1.1') {
        // the proxy ends the connection the next round needs: a connection-bound dance cannot go on
        closedBetween = closes
          ? `the proxy's 407 (round ${authRounds.length + 1}) says Connection: close`
          : chunked
            ? `the proxy's 407 (round ${authRounds.length + 1}) has a chunked body the agent does not read through`
            : `the proxy answered ${answer.httpVersion ? `HTTP/${answer.httpVersion}` : 'without a version'}, which keeps no connection`;
        return false;
      }
      usedScheme = value.split(' ')[0] ?? '';
      authRounds.push({
        round: authRounds.length + 1,
        statusLine: answer.statusLine,
        challenges: redactChallenges(challenges),
        answeredWith: usedScheme,
      });
      skipBody = length ? Number(length[1]) || 0 : 0;
      requestHead = headFor(value);
      redacted = redactAuthorization(requestHead);
      if (socket.destroyed) {
        closedBetween = `the proxy closed the connection after its 407 (round ${authRounds.length})`;
        return false;
      }
      socket.write(requestHead);
      return true;
    }
    function onData(chunk: Buffer): void {
      buf = Buffer.concat([buf, chunk]);
      if (skipBody) {
        const n = Math.min(skipBody, buf.length);
        skipBody -= n;
        buf = buf.subarray(n);
        if (!buf.length) return;
      }
      if (refusal) {
        // the body of a refusal, for its quote
        refusal.extra = Buffer.concat([refusal.extra, chunk]).subarray(0, MAX_REFUSAL_BODY);
        if (bodyComplete(refusal)) refuse();
        return;
      }
      const end = headEnd(buf);
      if (end < 0) {
        if (buf.length > MAX_ANSWER_HEAD) fail(`proxy answer head exceeds ${MAX_ANSWER_HEAD} bytes`);
        return;
      }
      timings.connectAnswerMs = Math.round(performance.now() - t0 - (timings.tcpConnectMs ?? 0));
      const answer = parseAnswerHead(Buffer.from(buf.subarray(0, end)), Buffer.from(buf.subarray(end)));
      if (answer.statusCode >= 200 && answer.statusCode < 300) {
        socket.pause();
        // Give glued bytes back to the stream; the strict-client check reads them from `answer.extra`.
        if (answer.extra.length) socket.unshift(answer.extra);
        finish({ ok: true, socket, answer, requestHead: redacted, timings, ...rounds() });
      } else if (answer.statusCode === 407 && handshake && !answering) {
        // the answer may take a moment (a Kerberos ticket): hold the bytes until it is sent
        answering = true;
        socket.pause();
        buf = Buffer.from(answer.extra);
        void answerChallenge(answer).then(
          (answered) => {
            answering = false;
            if (settled) return;
            if (!answered) return reject407(answer);
            socket.resume();
            if (buf.length) onData(Buffer.alloc(0));
          },
          (err: unknown) => fail(`answering the proxy's 407: ${errorMessage(err)}`, 'PC_AUTH'),
        );
      } else {
        reject407(answer);
      }
    }
    function reject407(answer: ConnectAnswer): void {
      // a refusal: wait a moment for its body (the error page says why), then fail quoting it
      refusal = answer;
      socket.resume();
      clearTimeout(timer);
      if (bodyComplete(answer)) refuse();
      else timer = setTimeout(refuse, REFUSAL_BODY_WAIT_MS);
    }
    function refuse(): void {
      const a = refusal as ConnectAnswer;
      fail(`proxy answered "${a.statusLine}"`, `HTTP_${a.statusCode}`, a);
    }
    // TLS to the proxy: the TCP connect is timed on its own, the CONNECT goes after the handshake
    if (pt) socket.once('connect', () => (timings.tcpConnectMs = Math.round(performance.now() - t0)));
    socket.once(pt ? 'secureConnect' : 'connect', () => {
      timings.tcpConnectMs ??= Math.round(performance.now() - t0);
      clearTimeout(timer);
      timer = setTimeout(
        () => fail(`CONNECT ${authority}: proxy gave no answer within ${answerTimeoutMs} ms`, 'PC_DEADLINE'),
        answerTimeoutMs,
      );
      socket.write(requestHead);
    });
    function onError(err: Error): void {
      fail(
        `proxy ${opts.proxy.host}:${opts.proxy.port}: ${errorMessage(err)}`,
        (err as NodeJS.ErrnoException).code,
      );
    }
    function onClose(): void {
      if (refusal) {
        refuse();
        return;
      }
      // an answer cut short is still an answer: quote what came
      if (/^HTTP\/\d\.\d \d{3}/.test(buf.toString('latin1'))) {
        const a = { ...parseAnswerHead(Buffer.from(buf), Buffer.alloc(0)), truncated: true };
        fail(
          `proxy answered "${a.statusLine}" and closed before the end of its head`,
          `HTTP_${a.statusCode}`,
          a,
        );
        return;
      }
      if (authRounds.length && !buf.length) {
        closedBetween = `the proxy closed the connection after the agent's round ${authRounds.length} answer`;
        fail(
          `proxy closed the connection between authentication rounds (after the agent's ${usedScheme} answer to round ${authRounds.length})`,
          'PC_AUTH_CLOSED',
        );
        return;
      }
      fail(
        buf.length
          ? `proxy closed the connection after ${buf.length} byte(s) that are not an HTTP answer: ${JSON.stringify(buf.subarray(0, 64).toString('latin1'))}`
          : `proxy closed the connection before answering CONNECT ${authority}`,
        'PC_CLOSED',
      );
    }
    socket.on('data', onData);
    socket.on('error', onError);
    socket.on('close', onClose);
  });
}
