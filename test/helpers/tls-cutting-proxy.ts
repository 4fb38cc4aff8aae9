/**
 * Test-only proxy that tunnels CONNECT to any port but lets only the TLS handshake through: it
 * reads the client's TLS records and drops the tunnel as soon as the client sends application
 * data (in TLS 1.3 the client's first application_data record is its encrypted Finished; the
 * second is the first byte of the protocol inside). Like a filtering box that allows the
 * handshake and kills the flow: the TLS checks pass and the protocol inside fails. Raw `net`.
 */
import type { ProxyContext, ProxyUnderTest, StartedProxy } from '../../harness/proxies/types.ts';
import { parseConnect, readHead, startRawProxy } from './raw-proxy.ts';

export class TlsCuttingProxy implements ProxyUnderTest {
  readonly id = 'test-tls-cutting';
  /** How many tunnels were cut (for the test to prove it acted). */
  cuts = 0;
  describe(): string {
    return 'test proxy: passes the TLS handshake, drops the tunnel at the first application data';
  }
  start(ctx: ProxyContext): Promise<StartedProxy> {
    return startRawProxy(this.id, (client, raw) => {
      readHead(client, (head, rest) => {
        const m = parseConnect(head);
        if (!m) {
          client.end('HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n');
          return;
        }
        const upstream = raw.dial(ctx.lab?.addressOf(m.host) ?? '127.0.0.1', Number(m.port), () => {
          client.write('HTTP/1.1 200 Connection established\r\n\r\n');
          upstream.pipe(client);
          let buf = rest;
          let appData = 0;
          const feed = (chunk: Buffer) => {
            buf = Buffer.concat([buf, chunk]);
            // forward whole records only, until the client's second application_data record
            while (buf.length >= 5) {
              const len = 5 + buf.readUInt16BE(3);
              if (buf.length < len) break;
              if (buf[0] === 23 && ++appData >= 2) {
                this.cuts++;
                client.destroy();
                upstream.destroy();
                return;
              }
              upstream.write(buf.subarray(0, len));
              buf = buf.subarray(len);
            }
          };
          client.on('data', feed);
          feed(Buffer.alloc(0));
          client.resume();
        });
        upstream.on('close', () => client.destroy());
        client.on('close', () => upstream.destroy());
      });
    });
  }
}
