/**
 * Test-only proxy that behaves like squid's stock policy: CONNECT to 443 is tunnelled, any other
 * port is refused with 403 and an X-Squid-Error-like header. Raw `net`, so nothing is hidden.
 */
import type { ProxyContext, ProxyUnderTest, StartedProxy } from '../../harness/proxies/types.ts';
import { parseConnect, startRawProxy } from './raw-proxy.ts';

export class RefusingProxy implements ProxyUnderTest {
  readonly id = 'test-refusing';
  describe(): string {
    return 'test proxy: CONNECT only to port 443';
  }
  start(ctx: ProxyContext): Promise<StartedProxy> {
    return startRawProxy(this.id, (client, raw) => {
      client.once('data', (chunk) => {
        const target = parseConnect(chunk.toString('latin1'));
        if (target?.port !== '443') {
          client.end(
            'HTTP/1.1 403 Forbidden\r\nX-Squid-Error: ERR_ACCESS_DENIED 0\r\nContent-Length: 0\r\n\r\n',
          );
          return;
        }
        const upstream = raw.dial(ctx.lab?.addressOf(target.host) ?? '127.0.0.1', 443, () => {
          client.write('HTTP/1.1 200 Connection established\r\n\r\n');
          client.pipe(upstream).pipe(client);
        });
      });
    });
  }
}
