/**
 * Test-only proxy that tunnels CONNECT to any port but lets only the TLS handshake through: it
 * reads the client's TLS records and drops the tunnel as soon as the client sends application
 * data (in TLS 1.3 the client's first application_data record is its encrypted Finished; the
 * second is the first byte of the protocol inside). Like a filtering box that allows the
 * handshake and kills the flow: the TLS checks pass and the protocol inside fails. Raw `net`.
 */
import net, { type Socket } from 'node:net';
import type { ProxyContext, ProxyUnderTest, StartedProxy } from '../../harness/proxies/types.ts';

export class TlsCuttingProxy implements ProxyUnderTest {
  readonly id = 'test-tls-cutting';
  /** How many tunnels were cut (for the test to prove it acted). */
  cuts = 0;
  describe(): string {
    return 'test proxy: passes the TLS handshake, drops the tunnel at the first application data';
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
        client.off('data', onHead);
        client.pause();
        const m = /^CONNECT ([^:\s]+):(\d+) HTTP\/1\.1\r\n/.exec(head.toString('latin1'));
        if (!m) {
          client.end('HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n');
          return;
        }
        const rest = head.subarray(end + 4);
        const upstream = net.connect({
          host: ctx.lab.addressOf(m[1] ?? '') ?? '127.0.0.1',
          port: Number(m[2]),
        });
        track(upstream);
        upstream.on('close', () => client.destroy());
        client.on('close', () => upstream.destroy());
        upstream.once('connect', () => {
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
