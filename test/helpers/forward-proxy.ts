/**
 * Test-only forwarding proxy over raw `net`, for plain-HTTP (absolute-form) requests, that can
 * misbehave on purpose:
 *  - `leak`: passes the whole head on, Proxy-Authorization included (what a broken proxy does);
 *  - `rewrite`: replaces the User-Agent value;
 *  - `deny`: answers 403 itself.
 * One request per connection (it answers `Connection: close`), which keeps it simple and exact.
 */
import net, { type Socket } from 'node:net';
import type { ProxyContext, ProxyUnderTest, StartedProxy } from '../../harness/proxies/types.ts';

export type ForwardMode = 'leak' | 'rewrite' | 'deny';

export class MisbehavingForwardProxy implements ProxyUnderTest {
  constructor(
    readonly mode: ForwardMode,
    readonly id = `test-forward-${mode}`,
  ) {}
  describe(): string {
    return `test forwarding proxy (${this.mode})`;
  }
  async start(ctx: ProxyContext): Promise<StartedProxy> {
    const sockets = new Set<Socket>();
    const track = (s: Socket) => {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => s.destroy());
    };
    const server = net.createServer((client) => {
      track(client);
      let buf = Buffer.alloc(0);
      const onData = (chunk: Buffer) => {
        buf = Buffer.concat([buf, chunk]);
        const end = buf.indexOf('\r\n\r\n');
        if (end < 0) return;
        client.off('data', onData);
        client.pause();
        const head = buf.subarray(0, end).toString('latin1');
        const rest = buf.subarray(end + 4);
        const lines = head.split('\r\n');
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
        const upstream = net.connect({
          host: ctx.lab.addressOf(host ?? '') ?? '127.0.0.1',
          port: Number(port ?? 80),
        });
        track(upstream);
        upstream.once('connect', () => {
          upstream.write(
            `${method} ${path} ${version}\r\n${[...headers, 'Connection: close'].join('\r\n')}\r\n\r\n`,
          );
          if (rest.length) upstream.write(rest);
          client.pipe(upstream);
          upstream.pipe(client);
          client.resume();
        });
        upstream.once('error', () => client.destroy());
      };
      client.on('data', onData);
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
      credentials: { username: 'agent', password: 'pa55-word' },
      startMs: 0,
      stop: async () => {
        for (const s of sockets) s.destroy();
        await new Promise<void>((resolve) => server.close(() => resolve()));
      },
    };
  }
}
