/**
 * A proxy we did not start (a customer's), for `proxycheck validate --proxy URL`. start() checks
 * that the proxy reaches *this* lab for a lab host before any check runs.
 */
import { readFileSync } from 'node:fs';
import tls from 'node:tls';
import type { ProxyTls } from '../agent/proxy-tls.ts';
import { openTunnel } from '../agent/tunnel.ts';
import { UsageError } from '../errors.ts';
import { LAB_ID_HEADER, type Lab } from '../lab/lab.ts';
import { proxyAuthFor } from '../route/auth.ts';
import {
  type ProxyContext,
  type ProxyCredentials,
  type ProxyUnderTest,
  requireLab,
  type StartedProxy,
} from './types.ts';

export interface ExternalProxyOptions {
  url: string;
  credentials?: ProxyCredentials;
  timeoutMs?: number;
  /** Its id in results (default `external`); `validate` names discovered proxies `pac:host:port`, `wpad:host:port`. */
  id?: string;
  /** An https:// proxy: the CA its certificate must chain to (--proxy-ca; absent: Node's public roots). */
  proxyCa?: string[];
}

/** Parses `http(s)://[user:pass@]host:port`; credentials in the URL win over none. Never echoes a password. */
export function parseProxyUrl(raw: string): {
  host: string;
  port: number;
  credentials?: ProxyCredentials;
  /** An https:// proxy: the agent speaks TLS to it. */
  tls?: true;
} {
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    throw new UsageError(`--proxy must be a URL like http://proxy.example:3128, not "${redact(raw)}"`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:')
    throw new UsageError(`--proxy: only http:// and https:// proxies are supported, not ${u.protocol}//`);
  if (!u.hostname) throw new UsageError('--proxy: the URL has no host');
  const secure = u.protocol === 'https:';
  const port = u.port ? Number(u.port) : secure ? 443 : 80;
  const host = u.hostname.replace(/^\[(.*)\]$/, '$1');
  const credentials = u.username
    ? { username: decodeURIComponent(u.username), password: decodeURIComponent(u.password) }
    : undefined;
  return { host, port, ...(credentials ? { credentials } : {}), ...(secure ? { tls: true as const } : {}) };
}

/** `--proxy-ca FILE`: its PEM certificates, for an https:// proxy; every mistake one line. */
export function readProxyCa(file: string, proxyIsHttps: boolean): string[] {
  if (!proxyIsHttps) throw new UsageError('--proxy-ca is for an https:// proxy (--proxy https://host:port)');
  let pem: string;
  try {
    pem = readFileSync(file, 'utf8');
  } catch (err) {
    throw new UsageError(`--proxy-ca ${file}: ${(err as NodeJS.ErrnoException).code ?? 'unreadable'}`);
  }
  const certs = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g);
  if (!certs) throw new UsageError(`--proxy-ca ${file}: not a PEM certificate`);
  return certs;
}

/** Node's codes for a proxy certificate the agent refuses (untrusted, expired, another name). */
const CERT_REFUSED =
  /^(UNABLE_TO_|SELF_SIGNED_|DEPTH_ZERO_|CERT_|ERR_TLS_CERT_ALTNAME_INVALID$|ERR_SSL_|ERR_TLS_)/;

/**
 * An https:// proxy whose certificate the agent refuses, in one line: not for the host in the
 * proxy URL, or not trusted by --proxy-ca (or by Node's public roots when none was given).
 */
export function proxyCertError(
  host: string,
  port: number,
  pt: ProxyTls,
  code: string,
  error: string,
): PreflightError {
  const where = `${host}:${port}`;
  const why = error.replace(`proxy ${where}: `, '');
  return new PreflightError(
    code === 'ERR_TLS_CERT_ALTNAME_INVALID'
      ? `proxy ${where}: its certificate is not for ${host}: ${why}`
      : `proxy ${where}: its certificate is not trusted (${pt.ca ? 'by --proxy-ca' : "by Node's public roots; give --proxy-ca FILE"}): ${why}`,
  );
}

/** Whether a TLS error code is the agent refusing the proxy's certificate. */
export const refusesProxyCert = (code: string): boolean => CERT_REFUSED.test(code);

function redact(raw: string): string {
  return raw.replace(/\/\/([^:@/]*):[^@/]*@/, '//$1:***@');
}

/** Raised when the proxy does not reach the lab: `validate` stops with this one line. */
export class PreflightError extends UsageError {
  constructor(message: string) {
    super(message);
    this.name = 'PreflightError';
  }
}

export class ExternalProxy implements ProxyUnderTest {
  readonly id: string;
  constructor(private readonly opts: ExternalProxyOptions) {
    this.id = opts.id ?? 'external';
  }

  describe(): string {
    return `proxy at ${redact(this.opts.url)}`;
  }

  async start(ctx: ProxyContext): Promise<StartedProxy> {
    const t0 = performance.now();
    const { host, port, credentials: fromUrl, tls: secure } = parseProxyUrl(this.opts.url);
    const credentials = this.opts.credentials ?? fromUrl;
    const proxyTls = secure ? (this.opts.proxyCa ? { ca: this.opts.proxyCa } : {}) : undefined;
    const server = await preflight(
      requireLab(ctx, this.id),
      { host, port, ...(credentials ? { credentials } : {}), ...(proxyTls ? { tls: proxyTls } : {}) },
      this.opts.timeoutMs ?? 10_000,
    );
    return {
      id: this.id,
      kind: 'external',
      runtime: 'external',
      version: server ?? 'unknown',
      url: `${secure ? 'https' : 'http'}://${host.includes(':') ? `[${host}]` : host}:${port}`,
      host,
      port,
      ...(proxyTls ? { tls: proxyTls } : {}),
      ...(credentials ? { credentials } : {}),
      startMs: Math.round(performance.now() - t0),
      stop: async () => {},
    };
  }
}

/**
 * Opens a tunnel to the first lab host, does a TLS handshake without judging the certificate
 * (this only asks where the proxy goes, not whether an agent would trust it) and checks that the
 * answer carries this lab's id. A 407 is not a preflight error: the `connect` check reports it.
 * Returns what the proxy says it is (Server/Via header of its answer), if anything.
 */
async function preflight(
  lab: Lab,
  proxy: { host: string; port: number; credentials?: ProxyCredentials; tls?: ProxyTls },
  timeoutMs: number,
): Promise<string | undefined> {
  const first = lab.listening.find((l) => l.transport === 'https');
  if (!first) return undefined;
  const where = `${proxy.host}:${proxy.port}`;
  const tun = await openTunnel({
    proxy: {
      host: proxy.host,
      port: proxy.port,
      auth: proxyAuthFor(proxy.credentials),
      ...(proxy.tls ? { tls: proxy.tls } : {}),
    },
    target: { host: first.host, port: first.port },
    connectTimeoutMs: timeoutMs,
    answerTimeoutMs: timeoutMs,
  });
  if (!tun.ok) {
    if (proxy.tls && !tun.answer && CERT_REFUSED.test(tun.errorCode ?? ''))
      throw proxyCertError(proxy.host, proxy.port, proxy.tls, tun.errorCode ?? '', tun.error ?? '');
    if (!tun.answer && tun.timings.tcpConnectMs === undefined) {
      // the tunnel's error names the proxy already: say it once
      const why = (tun.error ?? '').replace(`proxy ${where}: `, '').replace(` ${where}`, '');
      throw new PreflightError(`proxy ${where} unreachable: ${why}`);
    }
    if (!tun.answer) {
      throw new PreflightError(
        `proxy ${where} accepted the connection but gave no answer to CONNECT ${first.host}:${first.port} (${tun.error}); if it cannot resolve lab hosts, feed it the output of "proxycheck lab hosts" (squid: hosts_file)`,
      );
    }
    if (tun.answer.statusCode === 407) return serverOf(tun.answer.headers);
    if (tun.answer.statusCode >= 500) {
      throw new PreflightError(
        `proxy ${where} cannot reach lab host ${first.host} (it answered "${tun.answer.statusLine}"): give it the lab's addresses, e.g. add the output of "proxycheck lab hosts" to its hosts file (squid: hosts_file)`,
      );
    }
    return serverOf(tun.answer.headers);
  }
  const labId = await new Promise<string | undefined>((resolve) => {
    const s = tls.connect({ socket: tun.socket, servername: first.host, rejectUnauthorized: false });
    tun.socket.resume();
    let buf = '';
    const timer = setTimeout(() => done(undefined), timeoutMs);
    function done(v: string | undefined) {
      clearTimeout(timer);
      s.destroy();
      resolve(v);
    }
    s.on('secureConnect', () =>
      s.write(`GET /echo/preflight HTTP/1.1\r\nHost: ${first.host}\r\nConnection: close\r\n\r\n`),
    );
    s.on('data', (d: Buffer) => {
      buf += d.toString('latin1');
      const m = new RegExp(`\\r\\n${LAB_ID_HEADER}: ([0-9a-f]+)\\r\\n`, 'i').exec(buf);
      if (m) done(m[1]);
      else if (buf.includes('\r\n\r\n')) done('');
    });
    s.on('error', () => done(undefined));
    s.on('close', () => done(undefined));
  });
  if (labId !== lab.id) {
    const addr = lab.addressOf(first.host);
    throw new PreflightError(
      `proxy ${where} does not reach this lab for ${first.host} (expected ${addr}): feed it the output of "proxycheck lab hosts" (squid: hosts_file) and check nothing else answers there`,
    );
  }
  return serverOf(tun.answer.headers);
}

function serverOf(headers: Array<[string, string]>): string | undefined {
  const h = headers.find(([k]) => /^(server|via)$/i.test(k));
  return h?.[1];
}
