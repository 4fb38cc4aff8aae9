/**
 * Test-only forwarding proxy over raw `net`, for plain-HTTP (absolute-form) requests, that can
 * misbehave on purpose:
 *  - `leak`: passes the whole head on, Proxy-Authorization included (what a broken proxy does);
 *  - `rewrite`: replaces the User-Agent value;
 *  - `deny`: answers 403 itself.
 * One request per connection (it answers `Connection: close`), which keeps it simple and exact.
 */
import type { Socket } from 'node:net';
import type { ProxyContext, ProxyUnderTest, StartedProxy } from '../../harness/proxies/types.ts';
import { type RawConnection, readHead, startRawProxy } from './raw-proxy.ts';

export type ForwardMode = 'leak' | 'rewrite' | 'deny';

export class MisbehavingForwardProxy implements ProxyUnderTest {
  constructor(
    readonly mode: ForwardMode,
    readonly id = `test-forward-${mode}`,
  ) {}
  describe(): string {
    return `test forwarding proxy (${this.mode})`;
  }
  start(ctx: ProxyContext): Promise<StartedProxy> {
    const onConnection = (client: Socket, raw: RawConnection) => {
      readHead(client, (head, rest) => {
        const lines = head.slice(0, -4).split('\r\n');
        const m = /^(\S+) http:\/\/([^/:\s]+)(?::(\d+))?(\/\S*) (HTTP\/1\.1)$/.exec(lines[0] ?? '');
        if (!m || this.mode === 'deny') {
          client.end('HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
          return;
        }
        const [, method, host, port, path, version] = m;
        let headers = lines.slice(1).filter((l) => !/^connection:/i.test(l));
        if (this.mode === 'rewrite') {
          headers = headers.map((l) => (/^user-agent:/i.test(l) ? 'User-Agent: Mozilla/5.0 (rewritten)' : l));
        }
        const upstream = raw.dial(ctx.lab?.addressOf(host ?? '') ?? '127.0.0.1', Number(port ?? 80), () => {
          upstream.write(
            `${method} ${path} ${version}\r\n${[...headers, 'Connection: close'].join('\r\n')}\r\n\r\n`,
          );
          if (rest.length) upstream.write(rest);
          client.pipe(upstream);
          upstream.pipe(client);
          client.resume();
        });
      });
    };
    return startRawProxy(this.id, onConnection, {
      credentials: { username: 'agent', password: 'pa55-word' },
    });
  }
}
