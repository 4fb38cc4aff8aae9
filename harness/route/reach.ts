/**
 * Did the tunnel reach the origin? A 2xx to CONNECT is necessary, not sufficient: an inspecting
 * squid answers `200 Connection established` to every CONNECT, also to one its policy denies, and
 * delivers the 403 inside the forged TLS session (or closes on non-TLS bytes); a filtering proxy
 * may answer 200 before it has connected anywhere. When the agent's own session cannot tell (it
 * refused a forged certificate, or its protocol is not TLS), a diagnostic connection of the
 * harness's own, kept apart from the agent's, looks behind the answer: inside TLS that accepts any
 * certificate it asks the lab origin for a page, and without TLS it sends a line the lab's echo
 * sends back. What comes back says whether the origin answered, or quotes what the proxy said
 * instead.
 */
import { randomBytes } from 'node:crypto';
import type { Socket } from 'node:net';
import tls, { type TLSSocket } from 'node:tls';
import { headEnd, openTunnel, parseAnswerHead, refusalDetail } from '../agent/tunnel.ts';
import { errorMessage } from '../errors.ts';
import type { ProxyRoute } from './route.ts';

export interface Reach {
  /** true: the origin answered; false: it did not; undefined: nothing tells (no lab marker). */
  reached: boolean | undefined;
  /** One clause for messages, e.g. `refused inside the inspected session: "HTTP/1.1 403 Forbidden" (...)`. */
  how: string;
  evidence: Record<string, unknown>;
  /** The status of the proxy's own answer inside the tunnel, when it answered instead of the origin. */
  insideStatusCode?: number;
}

export interface ReachOptions {
  /** The lab's id: an answer carrying it (header `x-proxycheck-lab`) came from the origin. */
  labId: string;
  labHeader: string;
  timeoutMs: number;
  /** The deadline for the TCP connection to the proxy (the agent's own; default timeoutMs). */
  connectTimeoutMs?: number;
  userAgent?: string;
}

/** The diagnostic could not even reach the proxy: no probe can tell anything, so none more is tried. */
class ProxyNotReached extends Error {}

/** squid's names for "I could not get there" (not a policy refusal). */
const CANNOT_REACH =
  /ERR_(CONNECT_FAIL|DNS_FAIL|CANNOT_FORWARD|GATEWAY_FAILURE|READ_TIMEOUT|CONNECT_TIMEOUT)/;
/** squid's names for "I got there and the far end was not what I expected". */
const REACHED_BUT = /ERR_(SECURE_CONNECT_FAIL|READ_ERROR|INVALID_RESP|ZERO_SIZE_OBJECT|WRITE_ERROR)/;

function read(
  socket: Socket | TLSSocket,
  deadlineMs: number,
  enough: (b: Buffer) => boolean,
): Promise<Buffer> {
  return new Promise((resolve) => {
    let buf = Buffer.alloc(0);
    const done = () => {
      clearTimeout(timer);
      socket.removeListener('data', onData);
      resolve(buf);
    };
    const timer = setTimeout(done, deadlineMs);
    const onData = (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      if (enough(buf)) done();
    };
    socket.on('data', onData);
    socket.once('close', done);
    socket.once('error', done);
    socket.resume();
  });
}

/** What an HTTP answer from inside the tunnel says about reaching the origin. */
function judgeInside(bytes: Buffer, o: ReachOptions, inside: string): Reach | undefined {
  const end = headEnd(bytes);
  if (!/^HTTP\/\d\.\d \d{3}/.test(bytes.toString('latin1'))) return undefined;
  const answer = parseAnswerHead(
    bytes.subarray(0, end < 0 ? bytes.length : end),
    bytes.subarray(end < 0 ? bytes.length : end),
  );
  const lab = answer.headers.find(([k]) => k.toLowerCase() === o.labHeader)?.[1];
  const evidence = {
    inside,
    insideAnswer: answer.statusLine,
    insideHead: answer.raw.toString('latin1').slice(0, 2048),
  };
  if (lab === o.labId) return { reached: true, how: `the lab origin answered ${inside}`, evidence };
  const detail = refusalDetail(answer) ?? '';
  const said = `"${answer.statusLine}"${detail ? ` (${detail})` : ''}`;
  const base = {
    evidence: { ...evidence, ...(detail ? { insideDetail: detail } : {}) },
    insideStatusCode: answer.statusCode,
  };
  if (answer.statusCode === 403 || answer.statusCode === 407 || /ERR_ACCESS_DENIED/.test(detail))
    return { reached: false, how: `refused ${inside}: ${said}`, ...base };
  if (
    CANNOT_REACH.test(detail) ||
    ((answer.statusCode === 502 || answer.statusCode === 504) && !REACHED_BUT.test(detail))
  )
    return {
      reached: false,
      how: `the proxy could not reach the origin; it answered ${inside}: ${said}`,
      ...base,
    };
  if (REACHED_BUT.test(detail))
    return {
      reached: true,
      how: `the proxy connected to the origin ${inside} but could not speak to it: ${said}`,
      ...base,
    };
  return { reached: undefined, how: `${inside} the proxy answered ${said}, not the origin`, ...base };
}

/** The diagnostic's own CONNECT; undefined when the proxy did not open it. */
async function probeTunnel(route: ProxyRoute, target: { host: string; port: number }, o: ReachOptions) {
  const tun = await openTunnel({
    proxy: route.proxy,
    target,
    connectTimeoutMs: o.connectTimeoutMs ?? o.timeoutMs,
    answerTimeoutMs: o.timeoutMs,
  });
  if (!tun.ok && tun.timings.tcpConnectMs === undefined && !tun.answer)
    throw new ProxyNotReached(tun.error ?? 'the proxy did not take the connection');
  return tun.ok ? tun : undefined;
}

/** Inside TLS that accepts any certificate: a GET the lab origin answers with its id. */
async function tlsProbe(
  route: ProxyRoute,
  target: { host: string; port: number },
  o: ReachOptions,
): Promise<Reach | undefined> {
  const tun = await probeTunnel(route, target, o);
  if (!tun) return undefined;
  const socket = tls.connect({ socket: tun.socket, servername: target.host, rejectUnauthorized: false });
  tun.socket.resume();
  try {
    const ok = await new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), o.timeoutMs);
      socket.once('secureConnect', () => {
        clearTimeout(timer);
        resolve(true);
      });
      socket.once('error', () => resolve(false));
      socket.once('close', () => resolve(false));
    });
    if (!ok) return undefined;
    // the port in Host too: a bumped request to another port is refused without it (squid 5.7)
    const host = target.port === 443 ? target.host : `${target.host}:${target.port}`;
    socket.write(
      `GET /echo/proxycheck-reach HTTP/1.1\r\nHost: ${host}\r\n${o.userAgent ? `User-Agent: ${o.userAgent}\r\n` : ''}Connection: close\r\n\r\n`,
    );
    const got = await read(socket, o.timeoutMs, (b) => headEnd(b) >= 0 || b.length > 4096);
    if (got.toString('latin1').startsWith('GET /echo/proxycheck-reach'))
      return {
        reached: true,
        how: 'the lab origin echoed the bytes sent inside TLS',
        evidence: { inside: 'inside TLS' },
      };
    const judged = judgeInside(got, o, 'inside the inspected session');
    if (judged) return judged;
    const issuer = socket.getPeerCertificate()?.issuer?.CN;
    return {
      reached: undefined,
      how: `the proxy completed TLS itself${issuer ? ` (certificate issued by "${issuer}")` : ''} and closed without an answer from the origin`,
      evidence: {
        inside: 'inside TLS',
        ...(got.length ? { insideBytes: got.subarray(0, 64).toString('latin1') } : {}),
      },
    };
  } finally {
    socket.destroy();
    tun.socket.destroy();
  }
}

/** Without TLS: a line the lab's echo sends back. */
async function plainProbe(
  route: ProxyRoute,
  target: { host: string; port: number },
  o: ReachOptions,
): Promise<Reach | undefined> {
  const tun = await probeTunnel(route, target, o);
  if (!tun) return undefined;
  try {
    const line = `PROXYCHECK-REACH ${randomBytes(6).toString('hex')}\n`;
    tun.socket.write(line);
    const got = await read(tun.socket, o.timeoutMs, (b) => b.length >= line.length || headEnd(b) >= 0);
    if (got.toString('latin1') === line)
      return {
        reached: true,
        how: 'the lab origin echoed the bytes sent through the tunnel',
        evidence: { inside: 'raw' },
      };
    const judged = judgeInside(got, o, 'in the raw tunnel');
    if (judged || !got.length) return judged;
    // something came back, not the bytes sent and not an answer of the proxy's
    return {
      reached: undefined,
      how: `${got.length} byte(s) came back that are not the ones sent: ${JSON.stringify(got.subarray(0, 48).toString('latin1'))}`,
      evidence: { inside: 'raw', insideBytes: got.subarray(0, 64).toString('latin1') },
    };
  } finally {
    tun.socket.destroy();
  }
}

/**
 * Looks behind a 2xx answer to CONNECT `target` on `route`: TLS first when the endpoint speaks TLS
 * (an inspecting proxy shows its refusal there), then raw bytes.
 */
export async function diagnoseReach(
  route: ProxyRoute,
  target: { host: string; port: number },
  speaksTls: boolean,
  o: ReachOptions,
): Promise<Reach> {
  const tried: string[] = [];
  try {
    for (const probe of speaksTls ? [tlsProbe, plainProbe] : [plainProbe, tlsProbe]) {
      const r = await probe(route, target, o);
      if (r)
        return {
          ...r,
          evidence: { ...r.evidence, diagnostic: 'a connection of the harness, apart from the agent' },
        };
      tried.push(probe === tlsProbe ? 'TLS' : 'raw bytes');
    }
  } catch (err) {
    return {
      reached: undefined,
      how: `the diagnostic connection failed: ${errorMessage(err)}`,
      evidence: {},
    };
  }
  return {
    reached: false,
    how: `the proxy closed the tunnel on the first bytes (${tried.join(' and ')}) without an answer from the origin`,
    evidence: { diagnostic: 'a connection of the harness, apart from the agent', tried },
  };
}
