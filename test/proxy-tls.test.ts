/**
 * TLS to the proxy on the route layer (ProxyAddress.tls in harness/agent/tunnel.ts), against an
 * in-process HTTPS proxy with a lab leaf: the agent checks the proxy's certificate against the lab
 * CA, sends SNI for the proxy's name, offers no ALPN (so never h2), and the CONNECT tunnel inside
 * carries bytes; a proxy certificate from a CA the agent does not trust, or for another name, is
 * refused before any CONNECT is sent.
 */
import net from 'node:net';
import tls from 'node:tls';
import t, { type Test } from 'tap';
import { openTunnel } from '../harness/agent/tunnel.ts';
import { testPki } from './helpers/fixtures.ts';
import { parseConnect, readHead } from './helpers/raw-proxy.ts';

async function echoServer(t: Test): Promise<number> {
  const server = net.createServer((s) => s.pipe(s));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  return (server.address() as net.AddressInfo).port;
}

/** An HTTPS proxy: TLS with `cert`, then CONNECT to the echo; records SNI, ALPN and the heads. */
async function httpsProxy(t: Test, cert: { certPem: string; keyPem: string }, echo: number) {
  const seen = {
    sni: [] as Array<string | false>,
    alpn: [] as Array<string | false | null>,
    heads: [] as string[],
  };
  const sockets = new Set<net.Socket>();
  // the proxy would take h2 if it were offered: a client offering it would get it
  const server = tls.createServer(
    { cert: cert.certPem, key: cert.keyPem, ALPNProtocols: ['h2', 'http/1.1'] },
    (client) => {
      sockets.add(client);
      client.on('error', () => {});
      seen.sni.push((client as tls.TLSSocket & { servername?: string | false }).servername ?? false);
      seen.alpn.push(client.alpnProtocol);
      readHead(client, (head, rest) => {
        seen.heads.push(head);
        if (!parseConnect(head)) return client.end('HTTP/1.1 400 Bad Request\r\n\r\n');
        const up = net.connect({ host: '127.0.0.1', port: echo }, () => {
          client.write('HTTP/1.1 200 Connection established\r\n\r\n');
          if (rest.length) up.write(rest);
          client.pipe(up).pipe(client);
          client.resume();
        });
        sockets.add(up);
        up.on('error', () => client.destroy());
      });
    },
  );
  server.on('tlsClientError', () => {});
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(async () => {
    for (const s of sockets) s.destroy();
    await new Promise<void>((r) => server.close(() => r()));
  });
  return { port: (server.address() as net.AddressInfo).port, seen };
}

t.test('CONNECT over TLS to the proxy: certificate checked, SNI sent, no ALPN', async (t) => {
  const { pki } = await testPki(t);
  const leaf = pki.labRoot.issueLeaf(['proxy.proxycheck.test']);
  const echo = await echoServer(t);
  const p = await httpsProxy(t, leaf, echo);
  const trust = [pki.labRoot.cert.certPem];

  const tun = await openTunnel({
    proxy: { host: '127.0.0.1', port: p.port, tls: { ca: trust, servername: 'proxy.proxycheck.test' } },
    target: { host: 'origin.test', port: 443 },
  });
  t.ok(tun.ok, tun.ok ? 'the tunnel opened' : (tun.error ?? 'no tunnel'));
  t.same(p.seen.sni, ['proxy.proxycheck.test'], 'SNI names the proxy');
  t.same(p.seen.alpn, [false], 'no ALPN offered to the proxy (no h2)');
  t.match(p.seen.heads[0], /^CONNECT origin\.test:443 HTTP\/1\.1\r\n/);
  if (tun.ok) {
    tun.socket.resume();
    const echoed = await new Promise<string>((resolve) => {
      tun.socket.once('data', (d) => resolve(d.toString()));
      tun.socket.write('ping');
    });
    t.equal(echoed, 'ping', 'the tunnel inside the TLS connection carries bytes');
    tun.socket.destroy();
  }

  // a proxy certificate the agent cannot verify: no CONNECT is sent
  const other = await testPki(t);
  const untrusted = await openTunnel({
    proxy: {
      host: '127.0.0.1',
      port: p.port,
      tls: { ca: [other.pki.labRoot.cert.certPem], servername: 'proxy.proxycheck.test' },
    },
    target: { host: 'origin.test', port: 443 },
  });
  t.notOk(untrusted.ok);
  if (untrusted.ok) return;
  t.match(untrusted.error, /certificate/i, untrusted.error ?? '');
  const wrongName = await openTunnel({
    proxy: { host: '127.0.0.1', port: p.port, tls: { ca: trust, servername: 'other.proxycheck.test' } },
    target: { host: 'origin.test', port: 443 },
  });
  t.notOk(wrongName.ok);
  if (wrongName.ok) return;
  t.match(wrongName.error, /other\.proxycheck\.test/, wrongName.error ?? '');
  t.equal(p.seen.heads.length, 1, 'only the verified connection got a CONNECT');

  // the ALPN record can tell: a client that offers h2 gets it from this proxy
  const h2 = tls.connect({
    host: '127.0.0.1',
    port: p.port,
    ca: trust,
    servername: 'proxy.proxycheck.test',
    ALPNProtocols: ['h2'],
  });
  const before = p.seen.alpn.length;
  await new Promise<void>((r) => h2.once('secureConnect', () => r()));
  for (let i = 0; i < 50 && p.seen.alpn.length === before; i++) await new Promise((r) => setTimeout(r, 20));
  h2.destroy();
  t.equal(p.seen.alpn.at(-1), 'h2', 'a client offering h2 is seen offering it');
});
