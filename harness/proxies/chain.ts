/**
 * In-process proxies built on proxy-chain:
 *  - chain-plain: forwards HTTP and tunnels CONNECT to any port.
 *  - chain-auth: the same behind Basic authentication (credentials generated per run; 407 without).
 *  - chain-mitm: TLS-intercepting. A CONNECT is answered by proxy-chain and handed to an in-process
 *    TLS server whose SNI callback issues leaves signed by the corporate inspection CA; it then
 *    re-originates TLS to the lab origin, verifying it against the lab root, and relays the
 *    plaintext both ways.
 */
import { randomBytes } from 'node:crypto';
import type { Socket } from 'node:net';
import tls, { type TLSSocket } from 'node:tls';
import { Server } from 'proxy-chain';
import type { Lab } from '../lab/lab.ts';
import type { LabPki } from '../lab/pki.ts';
import { packageVersion } from '../util/pkg.ts';
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
  auth?: boolean;
  mitm?: boolean;
  /** Only for tests that prove a check can fail: rewrite the decrypted client→origin stream. */
  tamper?: PlaintextTamper;
  /** Deadline for the re-originated TLS connection to the origin. */
  originTimeoutMs?: number;
}

export class ChainProxy implements ProxyUnderTest {
  readonly id: string;
  constructor(private readonly opts: ChainOptions = {}) {
    this.id = opts.id ?? (opts.mitm ? 'chain-mitm' : opts.auth ? 'chain-auth' : 'chain-plain');
  }

  describe(): string {
    if (this.opts.mitm) return 'proxy-chain, TLS-intercepting with the corporate inspection CA';
    if (this.opts.auth) return 'proxy-chain with Basic authentication';
    return 'proxy-chain, open CONNECT to any port';
  }

  async start(ctx: ProxyContext): Promise<StartedProxy> {
    const t0 = performance.now();
    const lab = requireLab(ctx, this.id);
    const credentials: ProxyCredentials | undefined = this.opts.auth
      ? { username: 'agent', password: randomBytes(12).toString('base64url') }
      : undefined;
    const mitm = this.opts.mitm ? new Interceptor(lab, lab.pki, this.opts) : undefined;
    const server = new Server({
      port: 0,
      host: '127.0.0.1',
      authRealm: 'proxycheck',
      prepareRequestFunction: ({ username, password, hostname, port, isHttp }) => {
        if (credentials && (username !== credentials.username || password !== credentials.password)) {
          return { requestAuthentication: true, failMsg: 'Proxy credentials required' };
        }
        if (mitm && !isHttp) {
          return { customConnectServer: mitm.serverFor(hostname, port) };
        }
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
      kind: this.opts.mitm ? 'mitm' : this.opts.auth ? 'auth' : 'plain',
      runtime: 'in-process',
      version: `proxy-chain ${PROXY_CHAIN_VERSION}`,
      url: `http://127.0.0.1:${port}`,
      host: '127.0.0.1',
      port,
      ...(credentials ? { credentials } : {}),
      ...(mitm ? { inspectionCa: lab.pki.corporate.cert.certPem } : {}),
      startMs: Math.round(performance.now() - t0),
      stop: async () => {
        mitm?.closeAll();
        await server.close(true);
      },
    };
  }
}

/** The intercepting half of chain-mitm. */
class Interceptor {
  private readonly sockets = new Set<Socket>();
  constructor(
    private readonly lab: Lab,
    private readonly pki: LabPki,
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
        const leaf = this.pki.corporate.issueLeaf([servername || hostname]);
        cb(null, tls.createSecureContext({ cert: leaf.certPem, key: leaf.keyPem }));
      },
      // used when the client sends no SNI
      ...(() => {
        const leaf = this.pki.corporate.issueLeaf([hostname]);
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
        ca: this.pki.labRoot.cert.certPem,
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
export const chainAuth = (): ProxyUnderTest => new ChainProxy({ auth: true });
export const chainMitm = (): ProxyUnderTest => new ChainProxy({ mitm: true });
