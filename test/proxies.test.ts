import t from 'tap';
import { startTls } from '../harness/agent/tls.ts';
import { openTunnel } from '../harness/agent/tunnel.ts';
import { CORPORATE_CA_CN } from '../harness/lab/pki.ts';
import { ChainProxy } from '../harness/proxies/chain.ts';
import { basicAuth, proxyAuthFor } from '../harness/route/auth.ts';
import { https443, startProxy, testLab } from './helpers/fixtures.ts';
import { labNet } from './helpers/lab-net.ts';

const HOST = 'ras.flexxible.com';

t.test('chain-plain tunnels to 443 and to other ports, answer quoted exactly', async (t) => {
  const { lab, runDir, pki } = await testLab(t, await labNet(t), [
    {
      host: HOST,
      ports: [
        { port: 443, transport: 'https' },
        { port: 13000, transport: 'https' },
      ],
    },
  ]);
  const p = await startProxy(t, new ChainProxy(), lab, runDir);
  t.equal(p.id, 'chain-plain');
  t.match(p.version, /^proxy-chain \d+\.\d+\.\d+$/);
  for (const port of [443, 13000]) {
    const tun = await openTunnel({ proxy: p, target: { host: HOST, port } });
    t.ok(tun.ok, `CONNECT to ${port}`);
    if (!tun.ok) continue;
    t.equal(tun.answer.statusLine, 'HTTP/1.1 200 Connection Established');
    t.equal(tun.answer.raw.toString('latin1'), 'HTTP/1.1 200 Connection Established\r\n\r\n');
    t.equal(tun.answer.extra.length, 0);
    t.type(tun.timings.tcpConnectMs, 'number');
    t.type(tun.timings.connectAnswerMs, 'number');
    const s = await startTls(tun.socket, { servername: HOST, ca: [pki.labRoot.cert.certPem] });
    t.ok(s.socket, 'the agent accepts the origin certificate');
    t.equal(s.chain[0]?.issuerCN, pki.labRoot.commonName);
    s.socket?.destroy();
  }
});

t.test('chain-auth answers 407 without or with wrong credentials, 200 with the right ones', async (t) => {
  const { lab, runDir } = await testLab(t, await labNet(t), [https443(HOST)]);
  const p = await startProxy(t, new ChainProxy({ auth: true }), lab, runDir);
  t.ok(p.credentials?.password && p.credentials.password.length >= 12, 'credentials generated per run');
  const none = await openTunnel({ proxy: { host: p.host, port: p.port }, target: { host: HOST, port: 443 } });
  t.notOk(none.ok);
  t.equal(none.answer?.statusCode, 407);
  const challenge = none.answer?.headers.find(([k]) => k.toLowerCase() === 'proxy-authenticate');
  t.match(challenge?.[1], /^Basic realm="proxycheck"/);
  const wrong = await openTunnel({
    proxy: { host: p.host, port: p.port, auth: basicAuth({ username: 'agent', password: 'wrong' }) },
    target: { host: HOST, port: 443 },
  });
  t.equal(wrong.answer?.statusCode, 407);
  t.notMatch(wrong.requestHead, /d3Jvbmc/, 'the password never appears in evidence');
  const right = await openTunnel({
    proxy: { host: p.host, port: p.port, auth: proxyAuthFor(p.credentials) },
    target: { host: HOST, port: 443 },
  });
  t.ok(right.ok);
  if (right.ok) right.socket.destroy();
});

t.test('chain-mitm re-signs with the corporate CA and still reaches the origin', async (t) => {
  const { lab, runDir, pki } = await testLab(t, await labNet(t), [https443(HOST)]);
  const p = await startProxy(t, new ChainProxy({ mitm: true }), lab, runDir);
  t.equal(p.inspectionCa, pki.corporate.cert.certPem);
  const strict = await openTunnel({ proxy: p, target: { host: HOST, port: 443 } });
  if (!strict.ok) throw new Error('tunnel');
  const refused = await startTls(strict.socket, { servername: HOST, ca: [pki.labRoot.cert.certPem] });
  t.notOk(refused.socket, 'an agent trusting only the public root refuses');
  t.equal(refused.chain[0]?.issuerCN, CORPORATE_CA_CN);
  t.match(refused.refused, /not trusted/);

  const tun = await openTunnel({ proxy: p, target: { host: HOST, port: 443 } });
  if (!tun.ok) throw new Error('tunnel');
  const s = await startTls(tun.socket, {
    servername: HOST,
    ca: [pki.labRoot.cert.certPem, pki.corporate.cert.certPem],
  });
  t.ok(s.socket, 'an agent with the corporate CA deployed accepts');
  const reply = await new Promise<string>((resolve) => {
    let buf = '';
    s.socket?.on('data', (d) => {
      buf += d.toString();
      if (buf.includes('"requestLine"')) resolve(buf);
    });
    s.socket?.write(`GET /echo HTTP/1.1\r\nHost: ${HOST}\r\n\r\n`);
  });
  t.match(reply, /"requestLine":"GET \/echo HTTP\/1.1"/, 'the origin answered through the interception');
  s.socket?.destroy();
});

t.test('stop() closes the listening port and open tunnels', async (t) => {
  const { lab, runDir } = await testLab(t, await labNet(t), [https443(HOST)]);
  const p = await new ChainProxy().start({ lab, runDir });
  const tun = await openTunnel({ proxy: p, target: { host: HOST, port: 443 } });
  if (!tun.ok) throw new Error('tunnel');
  const closed = new Promise((resolve) => tun.socket.once('close', resolve));
  tun.socket.resume();
  await p.stop();
  await closed;
  const again = await openTunnel({ proxy: p, target: { host: HOST, port: 443 } });
  t.notOk(again.ok);
  t.equal(again.ok ? 'connected' : again.errorCode, 'ECONNREFUSED');
});
