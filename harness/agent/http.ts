/**
 * HTTP/1.1 over a tunnel the agent already verified, with undici doing the HTTP semantics. Every
 * byte the agent writes is recorded, so the `headers` check can compare what left the agent with
 * what arrived at the origin.
 */
import type { Socket } from 'node:net';
import { Client } from 'undici';
import { sha256 } from '../lab/lab.ts';

export interface HttpExchange {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
  bodySha256: string;
  /** The request head exactly as the agent wrote it. */
  sentHead: Buffer;
  ms: number;
}

/**
 * An undici Client that speaks HTTP/1.1 over one socket the agent already has (a verified tunnel):
 * undici's connect hands out that socket once; when it closes, the client does not dial anew (an
 * agent would open a new tunnel, through the proxy).
 */
export function clientOver(
  socket: Socket,
  origin: string,
  timeouts: { headersTimeout?: number; bodyTimeout?: number } = {},
): Client {
  let handedOut = false;
  return new Client(origin, {
    pipelining: 1,
    ...timeouts,
    connect: (_opts, cb) => {
      if (handedOut) {
        queueMicrotask(() => cb(new Error('the tunnel is closed; an agent would open a new one'), null));
        return;
      }
      handedOut = true;
      // undici expects the callback asynchronously, as a real connect would call it
      queueMicrotask(() => cb(null, socket as never));
    },
  });
}

export class TunnelHttpClient {
  private readonly client: Client;
  private written: Buffer[] = [];

  constructor(
    private readonly socket: Socket,
    origin: string,
    private readonly timeoutMs = 15_000,
  ) {
    const origWrite = socket.write.bind(socket) as (...a: unknown[]) => boolean;
    socket.write = ((chunk: unknown, ...rest: unknown[]) => {
      const enc = typeof rest[0] === 'string' ? (rest[0] as BufferEncoding) : 'utf8';
      if (typeof chunk === 'string') this.written.push(Buffer.from(chunk, enc));
      else if (chunk instanceof Uint8Array) this.written.push(Buffer.from(chunk));
      return origWrite(chunk, ...rest);
    }) as typeof socket.write;
    this.client = clientOver(socket, origin, { headersTimeout: timeoutMs, bodyTimeout: timeoutMs });
  }

  async request(opts: {
    method: string;
    path: string;
    headers: Array<[string, string]>;
    body?: Buffer;
  }): Promise<HttpExchange> {
    this.written = [];
    const t0 = performance.now();
    const res = await this.client.request({
      method: opts.method as 'GET',
      path: opts.path,
      headers: opts.headers.flat(),
      ...(opts.body ? { body: opts.body } : {}),
      headersTimeout: this.timeoutMs,
      bodyTimeout: this.timeoutMs,
    });
    const body = Buffer.from(await res.body.arrayBuffer());
    const all = Buffer.concat(this.written);
    const end = all.indexOf('\r\n\r\n');
    return {
      status: res.statusCode,
      headers: res.headers,
      body,
      bodySha256: sha256(body),
      sentHead: end >= 0 ? all.subarray(0, end + 4) : all,
      ms: Math.round(performance.now() - t0),
    };
  }

  async close(): Promise<void> {
    await this.client.destroy();
    this.socket.destroy();
  }
}
