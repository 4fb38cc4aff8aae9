/**
 * The lab "internet": every catalog host gets a deterministic loopback address (see
 * addresses.ts) and listens on its real port(s) with a certificate from the lab root.
 *
 * Origin behaviours, chosen by path on every origin:
 *  - `/echo` (and any unknown path): returns the request line, the request head exactly as
 *    received (base64) and the SHA-256 of the body, as JSON.
 *  - `/sink`: reads the body and answers its byte count and SHA-256.
 *  - `/source?bytes=N`: sends N deterministic bytes, their SHA-256 in `x-proxycheck-sha256`.
 *  - WebSocket upgrades by path, answered by the lab services (services/: `/ws` echo, MQTT,
 *    AMQP, ...).
 *
 * `tls` and `tcp` origins speak a raw stream service instead (services/: `echo`, `apf`, `mqtt`),
 * chosen per port. Plain `http` origins capture the raw request head too: the socket is handed
 * to Node's parser through a wrapper, so the tap sees the bytes before the parser does.
 */
import { createCipheriv, createHash, randomBytes } from 'node:crypto';
import type { LookupAddress, LookupAllOptions, LookupOneOptions } from 'node:dns';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import https from 'node:https';
import net, { isIP, type Socket } from 'node:net';
import { Duplex } from 'node:stream';
import tls, { type TLSSocket } from 'node:tls';
import { errorMessage, SetupError } from '../errors.ts';
import { DEFAULT_LAB_NET, labAddress } from './addresses.ts';
import { HeadTap } from './headtap.ts';
import type { LabPki } from './pki.ts';
import { LAB_SERVICES } from './services/index.ts';
import type { LabService, StreamInfo } from './services/types.ts';

export type OriginTransport = 'https' | 'http' | 'tls' | 'tcp';

export interface LabPortSpec {
  port: number;
  transport: OriginTransport;
  /** Require a client certificate issued by the lab device CA (mutual TLS). */
  mtls?: boolean;
  /** The stream service of a `tls` or `tcp` origin (default `echo`). */
  service?: string;
}

export interface LabHostSpec {
  host: string;
  ports: LabPortSpec[];
}

export interface EchoReply {
  requestLine: string;
  /** The request head (request line + header lines + CRLF CRLF) as received, base64. */
  rawHead: string;
  rawHeaders: string[];
  bodyBytes: number;
  bodySha256: string;
  tls?: { servername: string | null; alpn: string | false; clientCertSubject?: string };
}

export interface SinkReply {
  bytes: number;
  sha256: string;
}

export type LookupFunction = {
  (
    hostname: string,
    options: LookupAllOptions,
    cb: (err: NodeJS.ErrnoException | null, addresses: LookupAddress[]) => void,
  ): void;
  (
    hostname: string,
    options: LookupOneOptions | number | undefined,
    cb: (err: NodeJS.ErrnoException | null, address: string, family: number) => void,
  ): void;
};

const SOURCE_KEY = Buffer.alloc(16, 7);
const SOURCE_IV = Buffer.alloc(16, 0);

/** N deterministic pseudo-random bytes (AES-128-CTR keystream): the same on every run. */
export function sourceBytes(n: number): Buffer {
  return createCipheriv('aes-128-ctr', SOURCE_KEY, SOURCE_IV).update(Buffer.alloc(n));
}

export function sha256(data: Buffer | string): string {
  return createHash('sha256').update(data).digest('hex');
}

/** Every lab answer names the lab that sent it, so a client can tell it reached this lab. */
export const LAB_ID_HEADER = 'x-proxycheck-lab';

export class Lab {
  readonly net: number;
  /** Random per lab instance; sent in every answer as `x-proxycheck-lab`. */
  readonly id = randomBytes(8).toString('hex');
  private readonly addresses = new Map<string, string>();
  private readonly servers: Array<net.Server> = [];
  private readonly streams = new Set<Duplex>();
  private readonly services: LabService[];
  private readonly taps = new WeakMap<object, HeadTap>();
  readonly listening: Array<{ host: string; address: string; port: number; transport: OriginTransport }> = [];

  private constructor(
    readonly pki: LabPki,
    readonly hosts: LabHostSpec[],
    net: number,
  ) {
    this.net = net;
    this.services = LAB_SERVICES.map((f) => f(this));
  }

  static async start(opts: { pki: LabPki; hosts: LabHostSpec[]; net?: number }): Promise<Lab> {
    const lab = new Lab(opts.pki, opts.hosts, opts.net ?? DEFAULT_LAB_NET);
    lab.assignAddresses();
    try {
      for (const h of opts.hosts) {
        for (const p of h.ports) await lab.listen(h.host, p);
      }
    } catch (err) {
      await lab.stop();
      throw err;
    }
    return lab;
  }

  private assignAddresses(): void {
    const owner = new Map<string, string>();
    for (const { host } of this.hosts) {
      const addr = labAddress(host, this.net);
      const other = owner.get(addr);
      if (other && other !== host) {
        throw new SetupError(`lab address collision: ${host} and ${other} both map to ${addr}`);
      }
      owner.set(addr, host);
      this.addresses.set(host.toLowerCase(), addr);
    }
  }

  addressOf(host: string): string | undefined {
    return this.addresses.get(host.toLowerCase());
  }

  /** hosts-file lines for every lab host (for `proxycheck lab hosts`, squid's hosts_file, ...). */
  hostsFile(): string {
    return [...this.addresses].map(([host, addr]) => `${addr}\t${host}`).join('\n') + '\n';
  }

  /**
   * A dns.lookup-compatible function that answers lab hosts only. Anything else fails with
   * ENOTFOUND: lab traffic never leaves loopback.
   */
  readonly lookup: LookupFunction = ((
    hostname: string,
    options: LookupOneOptions | LookupAllOptions | number | undefined,
    cb: (...args: unknown[]) => void,
  ) => {
    const all = typeof options === 'object' && options !== null && 'all' in options && options.all;
    const literal = isIP(hostname) ? hostname : undefined;
    const address = literal ?? this.addressOf(hostname);
    process.nextTick(() => {
      if (!address) {
        const err: NodeJS.ErrnoException = new Error(`getaddrinfo ENOTFOUND ${hostname} (not a lab host)`);
        err.code = 'ENOTFOUND';
        cb(err, all ? [] : undefined, undefined);
        return;
      }
      const family = isIP(address);
      if (all) cb(null, [{ address, family }]);
      else cb(null, address, family);
    });
  }) as LookupFunction;

  private async listen(host: string, spec: LabPortSpec): Promise<void> {
    const address = this.addressOf(host);
    if (!address) throw new SetupError(`no lab address for ${host}`);
    const info: StreamInfo = { host, port: spec.port, labId: this.id };
    const mtls = spec.mtls
      ? { requestCert: true, rejectUnauthorized: true, ca: this.pki.deviceCa.cert.certPem }
      : {};
    let server: net.Server;
    if (spec.transport === 'tls' || spec.transport === 'tcp') {
      const service = this.services.find((s) => s.name === (spec.service ?? 'echo'));
      if (!service?.stream)
        throw new SetupError(`lab origin ${host}:${spec.port}: no stream service "${spec.service}"`);
      const serve = (socket: Socket) => {
        this.track(socket);
        const cn = (socket as TLSSocket).encrypted
          ? (socket as TLSSocket).getPeerCertificate?.()?.subject?.CN
          : undefined;
        service.stream?.(socket, { ...info, ...(cn ? { clientCertCN: String(cn) } : {}) });
      };
      if (spec.transport === 'tls') {
        const leaf = this.pki.labRoot.issueLeaf([host]);
        server = tls.createServer({ cert: leaf.certPem, key: leaf.keyPem, ...mtls }, serve);
        server.on('tlsClientError', () => {});
      } else {
        server = net.createServer(serve);
      }
    } else {
      const handler = (req: IncomingMessage, res: ServerResponse) => {
        res.setHeader(LAB_ID_HEADER, this.id);
        this.handle(req, res);
      };
      let httpServer: http.Server | https.Server;
      if (spec.transport === 'https') {
        const leaf = this.pki.labRoot.issueLeaf([host]);
        httpServer = https.createServer({ cert: leaf.certPem, key: leaf.keyPem, ...mtls }, handler);
        httpServer.on('secureConnection', (socket: TLSSocket) => this.tap(socket));
        httpServer.on('tlsClientError', () => {
          // a client (or an intercepting proxy) that refuses our certificate: nothing to do
        });
        server = httpServer;
      } else {
        // Plain HTTP: Node's parser would read the socket's handle directly and the tap would see
        // nothing, so the parser gets a wrapper stream fed by a tap that sees every byte first.
        httpServer = http.createServer(handler);
        server = net.createServer((socket) => {
          this.track(socket);
          httpServer.emit('connection', this.tappedStream(socket));
        });
      }
      httpServer.keepAliveTimeout = 30_000;
      httpServer.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
        const path = req.url ?? '';
        const service = this.services.find((s) => s.upgradePaths?.some((p) => path.startsWith(p)));
        if (service?.upgrade) {
          this.track(socket);
          service.upgrade(req, socket, head, info);
        } else socket.end('HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n');
      });
      httpServer.on('clientError', (_err, socket) => socket.destroy());
    }
    await new Promise<void>((resolve, reject) => {
      server.once('error', (err: NodeJS.ErrnoException) => {
        const hint =
          err.code === 'EACCES'
            ? ' (ports below 1024 need root, CAP_NET_BIND_SERVICE, or sysctl net.ipv4.ip_unprivileged_port_start=0)'
            : err.code === 'EADDRINUSE'
              ? ' (another lab on this net? pick another with --lab-net)'
              : '';
        reject(
          new SetupError(
            `lab origin ${host} cannot listen on ${address}:${spec.port}: ${errorMessage(err)}${hint}`,
          ),
        );
      });
      server.listen(spec.port, address, () => resolve());
    });
    this.servers.push(server);
    this.listening.push({ host, address, port: spec.port, transport: spec.transport });
  }

  private track(socket: Duplex): void {
    this.streams.add(socket);
    socket.once('close', () => this.streams.delete(socket));
  }

  /** A Duplex over `socket` whose bytes pass through a head tap before Node's HTTP parser. */
  private tappedStream(socket: Socket): Duplex {
    const tap = new HeadTap();
    const wrapper = new Duplex({
      read: () => socket.resume(),
      write: (chunk, enc, cb) => socket.write(chunk, enc, cb),
      final: (cb) => socket.end(cb),
      destroy: (err, cb) => {
        socket.destroy();
        cb(err);
      },
    });
    const w = wrapper as Duplex & Record<string, unknown>;
    w.remoteAddress = socket.remoteAddress;
    w.remotePort = socket.remotePort;
    w.localAddress = socket.localAddress;
    w.localPort = socket.localPort;
    w.setTimeout = (ms: number, cb?: () => void) => {
      socket.setTimeout(ms);
      if (cb) wrapper.once('timeout', cb);
      return wrapper;
    };
    w.setNoDelay = () => wrapper;
    w.setKeepAlive = () => wrapper;
    w.address = () => socket.address();
    socket.on('timeout', () => wrapper.emit('timeout'));
    socket.on('data', (chunk: Buffer) => {
      tap.feed(chunk);
      if (!wrapper.push(chunk)) socket.pause();
    });
    socket.on('end', () => wrapper.push(null));
    socket.on('close', () => wrapper.destroy());
    socket.on('error', (err) => wrapper.destroy(err));
    this.taps.set(wrapper, tap);
    return wrapper;
  }

  private tap(socket: Socket): void {
    const tap = new HeadTap();
    this.taps.set(socket, tap);
    // before Node's parser, which emits 'request' from inside its own 'data' listener
    socket.prependListener('data', (chunk: Buffer) => tap.feed(chunk));
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url ?? '/', 'http://origin');
    const rawHead = this.taps.get(req.socket)?.shift();
    const hash = createHash('sha256');
    let bytes = 0;
    req.on('data', (chunk: Buffer) => {
      hash.update(chunk);
      bytes += chunk.length;
    });
    req.on('error', () => res.destroy());
    req.on('end', () => {
      const bodySha256 = hash.digest('hex');
      if (url.pathname === '/sink') {
        return json(res, { bytes, sha256: bodySha256 } satisfies SinkReply);
      }
      if (url.pathname === '/source') {
        const n = Number(url.searchParams.get('bytes') ?? '0');
        if (!Number.isInteger(n) || n < 0 || n > 512 * 1024 * 1024)
          return json(res, { error: 'bad bytes' }, 400);
        const body = sourceBytes(n);
        res.writeHead(200, {
          'content-type': 'application/octet-stream',
          'content-length': String(n),
          'x-proxycheck-sha256': sha256(body),
        });
        res.end(body);
        return;
      }
      const tlsSocket = req.socket as TLSSocket;
      const reply: EchoReply = {
        requestLine: `${req.method} ${req.url} HTTP/${req.httpVersion}`,
        rawHead: rawHead?.toString('base64') ?? '',
        rawHeaders: req.rawHeaders,
        bodyBytes: bytes,
        bodySha256,
      };
      if (tlsSocket.encrypted) {
        const peer = tlsSocket.getPeerCertificate?.();
        reply.tls = {
          servername: (tlsSocket as TLSSocket & { servername?: string | false }).servername || null,
          alpn: tlsSocket.alpnProtocol ?? false,
          ...(peer && 'subject' in peer && peer.subject
            ? { clientCertSubject: String(peer.subject.CN) }
            : {}),
        };
      }
      json(res, reply);
    });
  }

  async stop(): Promise<void> {
    for (const s of this.streams) s.destroy();
    await Promise.all([
      ...this.servers.map(
        (s) =>
          new Promise<void>((resolve) => {
            s.close(() => resolve());
            (s as http.Server).closeAllConnections?.();
          }),
      ),
      ...this.services.map((s) => s.close().catch(() => {})),
    ]);
    this.servers.length = 0;
  }
}

/** Every JSON answer carries the SHA-256 of its own body, so the client can check the downstream direction. */
function json(res: ServerResponse, body: unknown, status = 200): void {
  const text = Buffer.from(JSON.stringify(body));
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': String(text.length),
    'x-proxycheck-sha256': sha256(text),
  });
  res.end(text);
}
