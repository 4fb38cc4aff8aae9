/**
 * Test-only CONNECT proxies that misbehave on long-lived tunnels, over raw `net`:
 *  - `lifetimeMs`: closes every tunnel that long after it was opened (a firewall's maximum session
 *    time, squid's client_lifetime);
 *  - `idleMs`: closes a tunnel once no byte went either way for that long (squid's read_timeout).
 * It records each kill (when, why, bytes relayed) so tests can hold the verdict against it.
 * Also: `unreachableProxy()`, an address where nothing listens.
 */
import net, { type Socket } from 'node:net';
import type { ProxyContext, ProxyUnderTest, StartedProxy } from '../../harness/proxies/types.ts';
import { localProxy, parseConnect, type RawConnection, startRawProxy } from './raw-proxy.ts';

export interface Kill {
  target: string;
  afterMs: number;
  why: 'lifetime' | 'idle';
  bytesUp: number;
  bytesDown: number;
}

export class KillingProxy implements ProxyUnderTest {
  readonly kills: Kill[] = [];
  constructor(
    readonly id: string,
    private readonly opts: { lifetimeMs?: number; idleMs?: number },
  ) {}
  describe(): string {
    return `test proxy: closes tunnels ${this.opts.lifetimeMs ? `${this.opts.lifetimeMs} ms after they open` : `after ${this.opts.idleMs} ms without traffic`}`;
  }
  start(ctx: ProxyContext): Promise<StartedProxy> {
    const timers = new Set<NodeJS.Timeout>();
    const onConnection = (client: Socket, raw: RawConnection) => {
      client.once('data', (chunk) => {
        const m = parseConnect(chunk.toString('latin1'));
        if (!m) {
          client.end('HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n');
          return;
        }
        const target = `${m.host}:${m.port}`;
        const upstream = raw.dial(ctx.lab?.addressOf(m.host) ?? '127.0.0.1', Number(m.port), () => {
          client.write('HTTP/1.1 200 Connection established\r\n\r\n');
          const t0 = performance.now();
          let bytesUp = 0;
          let bytesDown = 0;
          let idle: NodeJS.Timeout | undefined;
          const kill = (why: Kill['why']) => {
            this.kills.push({ target, afterMs: Math.round(performance.now() - t0), why, bytesUp, bytesDown });
            client.end();
            upstream.end();
            setTimeout(() => {
              client.destroy();
              upstream.destroy();
            }, 50).unref();
          };
          const touch = () => {
            if (!this.opts.idleMs) return;
            if (idle) clearTimeout(idle);
            idle = setTimeout(() => kill('idle'), this.opts.idleMs);
            timers.add(idle);
          };
          if (this.opts.lifetimeMs) {
            const life = setTimeout(() => kill('lifetime'), this.opts.lifetimeMs);
            timers.add(life);
            client.once('close', () => clearTimeout(life));
          }
          client.once('close', () => idle && clearTimeout(idle));
          touch();
          client.on('data', (c: Buffer) => {
            bytesUp += c.length;
            touch();
            upstream.write(c);
          });
          upstream.on('data', (c: Buffer) => {
            bytesDown += c.length;
            touch();
            client.write(c);
          });
          client.on('end', () => upstream.end());
          upstream.on('end', () => client.end());
        });
      });
    };
    return startRawProxy(this.id, onConnection, {
      onStop: () => {
        for (const t of timers) clearTimeout(t);
      },
    });
  }
}

/** A proxy address where nothing listens (a port bound, then released): CONNECT gets ECONNREFUSED. */
export function unreachableProxy(id = 'unreachable'): ProxyUnderTest & { port?: number } {
  const adapter: ProxyUnderTest & { port?: number } = {
    id,
    describe: () => 'a configured proxy that is not running',
    start: async (): Promise<StartedProxy> => {
      const probe = net.createServer();
      await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
      const port = (probe.address() as net.AddressInfo).port;
      await new Promise<void>((resolve) => probe.close(() => resolve()));
      adapter.port = port;
      return localProxy(id, port, async () => {}, { version: 'none' });
    },
  };
  return adapter;
}
