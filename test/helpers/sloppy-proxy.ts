/**
 * Test-only CONNECT proxy that tunnels to any lab host and port but answers CONNECT sloppily, the
 * ways strict firmware (Intel AMT doing CIRA) rejects: `HTTP/1.0`, extra header lines, a body, or
 * bytes glued after the blank line. It can also kill tunnels that stay idle (no byte either way)
 * for `idleKillMs`, as proxies with a short read timeout do. Raw `net`, so nothing is hidden.
 */
import type { ProxyContext, ProxyUnderTest, StartedProxy } from '../../harness/proxies/types.ts';
import { parseConnect, readHead, startRawProxy } from './raw-proxy.ts';

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

  start(ctx: ProxyContext): Promise<StartedProxy> {
    return startRawProxy(this.id, (client, raw) => {
      readHead(client, (head, rest) => {
        const m = parseConnect(head, true);
        const address = m ? ctx.lab?.addressOf(m.host) : undefined;
        if (!m || !address) {
          client.end('HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n');
          return;
        }
        const target = `${m.host}:${m.port}`;
        const upstream = raw.dial(address, Number(m.port), () => {
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
      });
    });
  }
}
