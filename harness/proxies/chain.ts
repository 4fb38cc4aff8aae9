/**
 * The `chain` engine: proxy-chain in this process, configured from a definition's knobs
 * (engines.ts). CONNECT is refused with 403 outside `connectPorts`; an inspected CONNECT is
 * answered by proxy-chain and handed to an in-process TLS server whose SNI callback issues leaves
 * signed by the inspection CA, which re-originates TLS to the lab origin (verified against the lab
 * root) and relays the plaintext both ways; tunnel timers run on the client's socket; forwarded
 * HTTP gets the header policy. The built-in chain-plain, chain-auth and chain-mitm are definitions.
 */
import { randomBytes } from 'node:crypto';
import http, { type IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import tls, { type TLSSocket } from 'node:tls';
import { RequestError, Server } from 'proxy-chain';
import type { Lab } from '../lab/lab.ts';
import type { CertificateAuthority } from '../lab/pki.ts';
import { packageVersion } from '../util/pkg.ts';
import {
  type ConnectAnswer,
  type HeaderPolicy,
  type InspectionMode,
  inspects,
  proxyTlsName,
} from './definition.ts';
import {
  type ProxyContext,
  type ProxyCredentials,
  type ProxyUnderTest,
  requireLab,
  type StartedProxy,
} from './types.ts';

const PROXY_CHAIN_VERSION = packageVersion('proxy-chain');

/** A plaintext rewrite applied by chain-mitm to client→origin bytes. Test-only misbehaviour. */
export type PlaintextTamper = (chunk: Buffer, offset: number) => Buffer;

export interface ChainOptions {
  id?: string;
  summary?: string;
  /** Basic authentication with credentials generated per run. */
  auth?: boolean;
  /** Asks for Basic credentials and rejects every one (availability auth-loop); the agent has some. */
  authLoop?: boolean;
  /** Shorthand for `inspection: { mode: 'all' }`. */
  mitm?: boolean;
  /** Which CONNECTs are intercepted; `hosts` lower-case, tenant resolved. */
  inspection?: { mode: InspectionMode; hosts?: string[] };
  /** Subject of the inspection CA (default: the lab's corporate inspection CA). */
  caSubject?: string;
  /** CONNECT allowed to these ports only (403 otherwise); absent: any port. */
  connectPorts?: number[];
  /** A tunnel silent this long (no byte either way) is closed. */
  idleTimeoutSeconds?: number;
  /** A tunnel is closed this long after it opened. */
  lifetimeSeconds?: number;
  headers?: HeaderPolicy;
  connectAnswer?: ConnectAnswer;
  /** Only for tests that prove a check can fail: rewrite the decrypted client→origin stream. */
  tamper?: PlaintextTamper;
  /** Deadline for the re-originated TLS connection to the origin. */
  originTimeoutMs?: number;
  /** An HTTPS proxy: the agent speaks TLS to it (a certificate for its name from the lab CA). */
  tls?: boolean;
}

/** proxy-chain's own answer to an accepted CONNECT (direct.js, custom_connect.js). */
const PROXY_CHAIN_CONNECT_ANSWER = 'HTTP/1.1 200 Connection Established\r\n\r\n';

/** The CONNECT answer a definition asks for. */
export function connectAnswerHead(a: ConnectAnswer): string {
  const status = a.status ?? 200;
  const text = a.statusText ?? 'Connection Established';
  const lines = [`${a.version ?? 'HTTP/1.1'} ${status} ${text}`.trimEnd()];
  for (const [k, v] of a.headers ?? []) lines.push(`${k}: ${v}`);
  return `${lines.join('\r\n')}\r\n\r\n`;
}

export class ChainProxy implements ProxyUnderTest {
  readonly id: string;
  private readonly mode: InspectionMode;
  constructor(private readonly opts: ChainOptions = {}) {
    this.mode = opts.inspection?.mode ?? (opts.mitm ? 'all' : 'none');
    this.id = opts.id ?? (this.mode !== 'none' ? 'chain-mitm' : opts.auth ? 'chain-auth' : 'chain-plain');
  }

  describe(): string {
    if (this.opts.summary) return this.opts.summary;
    if (this.mode !== 'none') return 'proxy-chain, TLS-intercepting with the corporate inspection CA';
    if (this.opts.auth) return 'proxy-chain with Basic authentication';
    return 'proxy-chain, open CONNECT to any port';
  }

  async start(ctx: ProxyContext): Promise<StartedProxy> {
    const t0 = performance.now();
    const lab = requireLab(ctx, this.id);
    const o = this.opts;
    const credentials: ProxyCredentials | undefined =
      o.auth || o.authLoop
        ? { username: 'agent', password: randomBytes(12).toString('base64url') }
        : undefined;
    const inspecting = this.mode !== 'none';
    const ca = inspecting ? await lab.pki.inspectionCa(o.caSubject) : undefined;
    const mitm = ca ? new Interceptor(lab, ca, o) : undefined;
    const inspectHosts = new Set((o.inspection?.hosts ?? []).map((h) => h.toLowerCase()));
    const ports = o.connectPorts ? new Set(o.connectPorts) : undefined;
    const tunnels = new Set<Socket>();
    // an HTTPS proxy: a certificate for its name from the lab CA, which the agent trusts
    const servername = o.tls ? proxyTlsName(this.id) : undefined;
    const leaf = servername ? lab.pki.labRoot.issueLeaf([servername]) : undefined;
    // a chain: everything goes on to the parent proxy (started before this one, engines.ts WithParent)
    const upstreamProxyUrl = ctx.parent ? `http://${ctx.parent.host}:${ctx.parent.port}` : undefined;
    // forwarded plain HTTP goes to the origin on connections of this proxy's own (one per request),
    // never through Node's global agent: no origin connection shared between proxies or runs of one
    // process, and none left open once the proxy stops
    const httpAgent = new http.Agent({ keepAlive: false });
    const serverType = leaf
      ? { serverType: 'https' as const, httpsOptions: { key: leaf.keyPem, cert: leaf.certPem } }
      : { serverType: 'http' as const };
    const server = new Server({
      port: 0,
      host: '127.0.0.1',
      authRealm: 'proxycheck',
      ...serverType,
      prepareRequestFunction: ({ username, password, hostname, port, isHttp, request }) => {
        if (
          o.authLoop ||
          (credentials && (username !== credentials.username || password !== credentials.password))
        ) {
          return { requestAuthentication: true, failMsg: 'Proxy credentials required' };
        }
        if (isHttp)
          return {
            ...this.forwarding(request, lab, httpAgent),
            ...(upstreamProxyUrl ? { upstreamProxyUrl } : {}),
          };
        if (ports && !ports.has(port)) {
          throw new RequestError(`CONNECT to port ${port} is not allowed by this proxy's policy`, 403);
        }
        this.tunnelPolicy(request.socket, tunnels);
        if (mitm && inspects(this.mode, inspectHosts, hostname)) {
          return { customConnectServer: mitm.serverFor(hostname, port) };
        }
        if (upstreamProxyUrl) return { upstreamProxyUrl };
        return { dnsLookup: lab.lookup as never };
      },
    });
    server.on('requestFailed', () => {
      // per-request failures surface to the client as 5xx answers; nothing to log here
    });
    await server.listen();
    const port = server.port;
    return {
      id: this.id,
      kind: inspecting ? 'mitm' : o.auth || o.authLoop ? 'auth' : 'plain',
      runtime: 'in-process',
      version: `proxy-chain ${PROXY_CHAIN_VERSION}`,
      url: `${leaf ? 'https' : 'http'}://127.0.0.1:${port}`,
      host: '127.0.0.1',
      port,
      ...(servername ? { tls: { ca: [lab.pki.labRoot.cert.certPem], servername } } : {}),
      ...(credentials ? { credentials } : {}),
      ...(ca ? { inspectionCa: ca.cert.certPem } : {}),
      startMs: Math.round(performance.now() - t0),
      stop: async () => {
        mitm?.closeAll();
        for (const s of tunnels) s.destroy();
        await server.close(true);
        httpAgent.destroy();
      },
    };
  }

  /** Timers and the CONNECT answer of an accepted tunnel, on the client's socket. */
  private tunnelPolicy(sock: Socket, tunnels: Set<Socket>): void {
    const { idleTimeoutSeconds: idle, lifetimeSeconds: life, connectAnswer } = this.opts;
    tunnels.add(sock);
    sock.once('close', () => tunnels.delete(sock));
    if (idle !== undefined) {
      // node's socket timeout: no byte read or written for this long
      sock.setTimeout(idle * 1000);
      sock.once('timeout', () => sock.destroy());
    }
    if (life !== undefined) {
      const timer = setTimeout(() => sock.destroy(), life * 1000);
      sock.once('close', () => clearTimeout(timer));
    }
    if (connectAnswer) {
      // proxy-chain writes its fixed answer as the first bytes to the client; ours replaces it
      const write = sock.write;
      sock.write = function (this: Socket, chunk: unknown, ...rest: unknown[]) {
        sock.write = write;
        const out = chunk === PROXY_CHAIN_CONNECT_ANSWER ? connectAnswerHead(connectAnswer) : chunk;
        return (write as (...a: unknown[]) => boolean).call(this, out, ...rest);
      } as typeof sock.write;
    }
  }

  /** Forwarded plain HTTP: the header policy (proxy-chain itself adds nothing and consumes credentials). */
  private forwarding(request: IncomingMessage, lab: Lab, httpAgent: http.Agent): Record<string, unknown> {
    const h = this.opts.headers ?? {};
    const added: string[] = [];
    if (h.via) added.push('Via', '1.1 proxycheck-chain');
    if (h.xForwardedFor) added.push('X-Forwarded-For', request.socket.remoteAddress ?? '127.0.0.1');
    if (h.proxyAuthorization === 'forward') {
      return { customResponseFunction: () => forwardLeaking(request, lab, added, httpAgent) };
    }
    request.rawHeaders.push(...added);
    return { dnsLookup: lab.lookup as never, httpAgent };
  }
}

/**
 * A leaking forwarder (`headers.proxyAuthorization: forward`): proxy-chain always drops
 * Proxy-Authorization, so this proxy forwards the request itself, credentials included.
 */
async function forwardLeaking(
  request: IncomingMessage,
  lab: Lab,
  added: string[],
  agent: http.Agent,
): Promise<{ statusCode: number; headers: Record<string, string>; body: Buffer }> {
  const chunks: Buffer[] = [];
  for await (const c of request) chunks.push(c as Buffer);
  const url = new URL(request.url ?? '/');
  const headers: string[] = [];
  for (let i = 0; i < request.rawHeaders.length; i += 2) {
    const name = request.rawHeaders[i] as string;
    if (/^(connection|keep-alive|proxy-connection|te|trailer|transfer-encoding|upgrade)$/i.test(name))
      continue;
    headers.push(name, request.rawHeaders[i + 1] as string);
  }
  headers.push(...added);
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: url.hostname,
        port: Number(url.port || 80),
        method: request.method,
        path: `${url.pathname}${url.search}`,
        headers: headers as unknown as http.OutgoingHttpHeaders,
        lookup: lab.lookup as never,
        agent,
        timeout: 10_000,
      },
      (res) => {
        const body: Buffer[] = [];
        res.on('data', (c: Buffer) => body.push(c));
        res.on('end', () => {
          const out: Record<string, string> = {};
          for (const [k, v] of Object.entries(res.headers)) {
            if (v !== undefined && !/^(connection|keep-alive|transfer-encoding)$/i.test(k))
              out[k] = Array.isArray(v) ? v.join(', ') : v;
          }
          resolve({ statusCode: res.statusCode ?? 502, headers: out, body: Buffer.concat(body) });
        });
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error('origin answer deadline (10 s) passed')));
    req.on('error', reject);
    req.end(Buffer.concat(chunks));
  });
}

/** The intercepting half of chain-mitm. */
class Interceptor {
  private readonly sockets = new Set<Socket>();
  constructor(
    private readonly lab: Lab,
    private readonly ca: CertificateAuthority,
    private readonly opts: ChainOptions,
  ) {}

  /** proxy-chain answers `200` and emits 'connection' on what we return; we take it from there. */
  serverFor(hostname: string, port: number): never {
    const shim = {
      emit: (event: string, socket: Socket) => {
        if (event === 'connection') this.intercept(socket, hostname, port);
        return true;
      },
    };
    return shim as never;
  }

  closeAll(): void {
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
  }

  private track(s: Socket): void {
    this.sockets.add(s);
    s.once('close', () => this.sockets.delete(s));
  }

  private intercept(clientRaw: Socket, hostname: string, port: number): void {
    this.track(clientRaw);
    const client = new tls.TLSSocket(clientRaw, {
      isServer: true,
      SNICallback: (servername, cb) => {
        const leaf = this.ca.issueLeaf([servername || hostname]);
        cb(null, tls.createSecureContext({ cert: leaf.certPem, key: leaf.keyPem }));
      },
      // used when the client sends no SNI
      ...(() => {
        const leaf = this.ca.issueLeaf([hostname]);
        return { cert: leaf.certPem, key: leaf.keyPem };
      })(),
    });
    this.track(client);
    client.on('error', () => clientRaw.destroy());
    client.once('secure', () => {
      const servername = (client as TLSSocket & { servername?: string | false }).servername || hostname;
      const origin = tls.connect({
        host: hostname,
        port,
        servername,
        ca: this.lab.pki.labRoot.cert.certPem,
        lookup: this.lab.lookup as never,
        timeout: this.opts.originTimeoutMs ?? 10_000,
      });
      this.track(origin);
      origin.on('timeout', () => origin.destroy(new Error('origin TLS connect deadline')));
      origin.on('error', () => client.destroy());
      client.on('close', () => origin.destroy());
      origin.on('close', () => client.destroy());
      origin.once('secureConnect', () => {
        origin.setTimeout(0);
        origin.pipe(client);
        const tamper = this.opts.tamper;
        if (!tamper) {
          client.pipe(origin);
          return;
        }
        let offset = 0;
        client.on('data', (chunk: Buffer) => {
          const out = tamper(chunk, offset);
          offset += chunk.length;
          origin.write(out);
        });
        client.on('end', () => origin.end());
      });
    });
  }
}

export const chainPlain = (): ProxyUnderTest => new ChainProxy();
export const chainMitm = (): ProxyUnderTest => new ChainProxy({ mitm: true });
