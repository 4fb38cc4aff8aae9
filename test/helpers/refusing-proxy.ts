/**
 * Test-only proxy that behaves like squid's stock policy: CONNECT to 443 is tunnelled, any other
 * port is refused with 403 and an X-Squid-Error-like header. Raw `net`, so nothing is hidden.
 */
import net, { type Socket } from 'node:net';
import type { ProxyContext, ProxyUnderTest, StartedProxy } from '../../harness/proxies/types.ts';

export class RefusingProxy implements ProxyUnderTest {
  readonly id = 'test-refusing';
  describe(): string {
    return 'test proxy: CONNECT only to port 443';
  }
  async start(ctx: ProxyContext): Promise<StartedProxy> {
    const sockets = new Set<Socket>();
    const server = net.createServer((client) => {
      sockets.add(client);
      client.on('close', () => sockets.delete(client));
      client.on('error', () => {});
      client.once('data', (chunk) => {
        const m = /^CONNECT ([^:\s]+):(\d+) HTTP\/1\.1\r\n/.exec(chunk.toString('latin1'));
        if (m?.[2] !== '443') {
          client.end(
            'HTTP/1.1 403 Forbidden\r\nX-Squid-Error: ERR_ACCESS_DENIED 0\r\nContent-Length: 0\r\n\r\n',
          );
          return;
        }
        const address = ctx.lab.addressOf(m[1] ?? '') ?? '127.0.0.1';
        const upstream = net.connect({ host: address, port: 443 }, () => {
          client.write('HTTP/1.1 200 Connection established\r\n\r\n');
          client.pipe(upstream).pipe(client);
        });
        sockets.add(upstream);
        upstream.on('close', () => sockets.delete(upstream));
        upstream.on('error', () => client.destroy());
      });
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
