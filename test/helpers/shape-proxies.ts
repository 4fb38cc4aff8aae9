/**
 * Test-only proxies in shapes real proxies have, each over raw `net`:
 *  - EagerProxy: answers `200 Connection established` before it has connected anywhere, then
 *    cannot reach the origin (it dials an address where nothing listens) and closes the tunnel;
 *  - LfRefusingProxy: refuses every CONNECT with `HTTP/1.1 400 ERROR` and bare LF line endings,
 *    a short error page after it;
 *  - StagedTimerProxy: tunnels like a plain proxy, but times silence differently before the
 *    client's first byte (`idleBeforeMs`) and after it (`idleAfterMs`), as proxies that treat a
 *    fresh CONNECT and an established session differently do.
 */
import type { ProxyContext, ProxyUnderTest, StartedProxy } from '../../harness/proxies/types.ts';
import { parseConnect, readHead, startRawProxy } from './raw-proxy.ts';

export class EagerProxy implements ProxyUnderTest {
  readonly id = 'eager-200';
  describe(): string {
    return 'test proxy: answers 200 before connecting, then cannot reach the origin';
  }
  start(): Promise<StartedProxy> {
    return startRawProxy(this.id, (client, raw) => {
      readHead(client, () => {
        client.write('HTTP/1.1 200 Connection established\r\n\r\n');
        // port 9 on an address with no lab host: refused, so the tunnel ends at once
        const upstream = raw.dial('127.0.0.1', 9, () => client.pipe(upstream).pipe(client));
        upstream.on('error', () => client.destroy());
      });
    });
  }
}

export class LfRefusingProxy implements ProxyUnderTest {
  readonly id = 'lf-400';
  describe(): string {
    return 'test proxy: refuses CONNECT with "HTTP/1.1 400 ERROR" and bare LF line endings';
  }
  start(): Promise<StartedProxy> {
    return startRawProxy(this.id, (client) => {
      readHead(client, () => {
        const page = '<html><head><title>Request refused by policy</title></head></html>\n';
        client.end(`HTTP/1.1 400 ERROR\nContent-Type: text/html\nContent-Length: ${page.length}\n\n${page}`);
      });
    });
  }
}

export class StagedTimerProxy implements ProxyUnderTest {
  /** Tunnels closed, with why and after how much silence. */
  readonly kills: Array<{ target: string; stage: 'before' | 'after'; silentMs: number }> = [];
  constructor(
    readonly id: string,
    private readonly opts: { idleBeforeMs: number; idleAfterMs: number },
  ) {}
  describe(): string {
    return `test proxy: idle timer ${this.opts.idleBeforeMs} ms before the client's first byte, ${this.opts.idleAfterMs} ms after`;
  }
  start(ctx: ProxyContext): Promise<StartedProxy> {
    const timers = new Set<NodeJS.Timeout>();
    return startRawProxy(
      this.id,
      (client, raw) => {
        readHead(client, (head, rest) => {
          const m = parseConnect(head);
          const address = m ? ctx.lab?.addressOf(m.host) : undefined;
          if (!m || !address) return client.end('HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n');
          const target = `${m.host}:${m.port}`;
          const upstream = raw.dial(address, Number(m.port), () => {
            client.write('HTTP/1.1 200 Connection established\r\n\r\n');
            let stage: 'before' | 'after' = rest.length ? 'after' : 'before';
            let last = performance.now();
            let timer: NodeJS.Timeout | undefined;
            const arm = () => {
              if (timer) {
                clearTimeout(timer);
                timers.delete(timer);
              }
              last = performance.now();
              const ms = stage === 'before' ? this.opts.idleBeforeMs : this.opts.idleAfterMs;
              timer = setTimeout(() => {
                this.kills.push({ target, stage, silentMs: Math.round(performance.now() - last) });
                client.destroy();
                upstream.destroy();
              }, ms);
              timers.add(timer);
            };
            arm();
            if (rest.length) upstream.write(rest);
            client.on('data', (d: Buffer) => {
              stage = 'after';
              arm();
              upstream.write(d);
            });
            upstream.on('data', (d: Buffer) => {
              arm();
              client.write(d);
            });
            client.on('close', () => timer && clearTimeout(timer));
            client.resume();
          });
        });
      },
      {
        onStop: () => {
          for (const t of timers) clearTimeout(t);
        },
      },
    );
  }
}

/** Tunnels like a plain proxy, but answers `HTTP/1.0 200` in pieces: status line, headers, blank line. */
export class SplitAnswerProxy implements ProxyUnderTest {
  readonly id = 'split-answer';
  describe(): string {
    return 'test proxy: an HTTP/1.0 CONNECT answer written in three pieces';
  }
  start(ctx: ProxyContext): Promise<StartedProxy> {
    return startRawProxy(this.id, (client, raw) => {
      readHead(client, (head) => {
        const m = parseConnect(head);
        const address = m ? ctx.lab?.addressOf(m.host) : undefined;
        if (!m || !address) return client.end('HTTP/1.0 400 Bad Request\r\n\r\n');
        const upstream = raw.dial(address, Number(m.port), () => {
          const pieces = ['HTTP/1.0 200 Connection established\r\n', 'Proxy-agent: split/1\r\n', '\r\n'];
          const next = () => {
            const p = pieces.shift();
            if (p === undefined) {
              client.pipe(upstream).pipe(client);
              client.resume();
              return;
            }
            client.write(p);
            setTimeout(next, 30);
          };
          next();
        });
      });
    });
  }
}
