/**
 * Test-only CONNECT proxy that tunnels to any lab host and port but answers CONNECT sloppily, the
 * ways strict firmware (Intel AMT doing CIRA) rejects: `HTTP/1.0`, extra header lines, a body, or
 * bytes glued after the blank line. It can also kill tunnels that stay idle (no byte either way)
 * for `idleKillMs`, as proxies with a short read timeout do. Raw `net`, so nothing is hidden.
 */
import net, { type Socket } from 'node:net';
import type { ProxyContext, ProxyUnderTest, StartedProxy } from '../../harness/proxies/types.ts';

export interface SloppyOptions {
  id: string;
  /** Status line version (default 1.1). */
  httpVersion?: '1.0' | '1.1';
  /** Header lines after the status line, e.g. `Proxy-Agent: x`. */
  headers?: string[];
  /** A body, announced with Content-Length, sent with the answer. */
  body?: string;
  /** Bytes sent right after the blank line, in the same write as the answer (no Content-Length). */
  glue?: string;
  /** Close a tunnel after this many ms without a byte in either direction. */
  idleKillMs?: number;
}

export class SloppyProxy implements ProxyUnderTest {
  readonly id: string;
  /** Tunnels this proxy killed for idleness: target and when (ms after the CONNECT answer). */
  readonly kills: Array<{ target: string; afterMs: number }> = [];
  constructor(private readonly opts: SloppyOptions) {
    this.id = opts.id;
  }

  describe(): string {
    return `test proxy: sloppy CONNECT answers (${JSON.stringify(this.opts)})`;
  }

  answer(): Buffer {
    const lines = [
      `HTTP/${this.opts.httpVersion ?? '1.1'} 200 Connection established`,
      ...(this.opts.headers ?? []),
    ];
    if (this.opts.body !== undefined) lines.push(`Content-Length: ${Buffer.byteLength(this.opts.body)}`);
    return Buffer.from(
      `${lines.join('\r\n')}\r\n\r\n${this.opts.body ?? ''}${this.opts.glue ?? ''}`,
      'latin1',
    );
  }

  async start(ctx: ProxyContext): Promise<StartedProxy> {
    const sockets = new Set<Socket>();
    const track = (s: Socket) => {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => {});
    };
    const server = net.createServer((client) => {
      track(client);
      let head = Buffer.alloc(0);
      const onHead = (chunk: Buffer) => {
        head = Buffer.concat([head, chunk]);
        const end = head.indexOf('\r\n\r\n');
        if (end < 0) return;
        client.removeListener('data', onHead);
        client.pause();
        const m = /^CONNECT ([^:\s]+):(\d+) HTTP\/1\.[01]\r\n/.exec(head.toString('latin1'));
        const address = m ? ctx.lab.addressOf(m[1] ?? '') : undefined;
        if (!m || !address) {
          client.end('HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n');
          return;
        }
        const target = `${m[1]}:${m[2]}`;
        const rest = head.subarray(end + 4);
        const upstream = net.connect({ host: address, port: Number(m[2]) }, () => {
          client.write(this.answer());
          const t0 = performance.now();
          if (rest.length) upstream.write(rest);
          let timer: NodeJS.Timeout | undefined;
          const idle = this.opts.idleKillMs;
          const touch = () => {
            if (idle === undefined) return;
            if (timer) clearTimeout(timer);
            timer = setTimeout(() => {
              this.kills.push({ target, afterMs: Math.round(performance.now() - t0) });
              client.destroy();
              upstream.destroy();
            }, idle);
          };
          touch();
          client.on('data', touch);
          upstream.on('data', touch);
          const stop = () => {
            if (timer) clearTimeout(timer);
          };
          client.on('close', () => {
            stop();
            upstream.destroy();
          });
          upstream.on('close', () => {
            stop();
            client.destroy();
          });
          client.pipe(upstream);
          upstream.pipe(client);
          client.resume();
        });
        track(upstream);
        upstream.on('error', () => client.destroy());
      };
      client.on('data', onHead);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as net.AddressInfo).port;
    return {
      id: this.id,
      kind: 'plain',
      runtime: 'in-process',
      version: 'test',
      url: `http://127.0.0.1:${port}`,
      host: '127.0.0.1',
      port,
      startMs: 0,
      stop: async () => {
        for (const s of sockets) s.destroy();
        await new Promise<void>((resolve) => server.close(() => resolve()));
      },
    };
  }
}
