import type { lookup as dnsLookup } from 'node:dns';
import https from 'node:https';
import net from 'node:net';
import tls from 'node:tls';
import t from 'tap';
import WebSocket from 'ws';
import { labAddress, parseLabNet } from '../harness/lab/addresses.ts';
import { Lab, sha256, sourceBytes } from '../harness/lab/lab.ts';
import { https443, testLab, testPki } from './helpers/fixtures.ts';
import { labNet } from './helpers/lab-net.ts';

const HOST = 'west-eu.agent-api.analyzer.flexxible.com';

t.test('addresses are deterministic, inside 127.N.0.0/16, and documented by example', async (t) => {
  t.equal(labAddress(HOST), labAddress(HOST.toUpperCase()));
  t.match(labAddress(HOST, 77), /^127\.77\.\d+\.\d+$/);
  // Pinned here so a change of scheme is a visible, deliberate change: hosts files depend on it.
  t.equal(labAddress(HOST, 77), '127.77.239.203');
  t.equal(parseLabNet(undefined), 77);
  t.throws(() => parseLabNet('300'), /lab net must be a whole number from 1 to 254/);
});

t.test('lookup answers lab hosts only', async (t) => {
  const octet = await labNet(t);
  const { lab } = await testLab(t, octet, [https443(HOST)]);
  const lookup = (host: string, options: { all?: boolean }) =>
    new Promise((resolve, reject) =>
      (lab.lookup as typeof dnsLookup)(
        host,
        options as never,
        (err: Error | null, address: unknown, family?: number) =>
          err ? reject(err) : resolve(options.all ? address : { address, family }),
      ),
    );
  t.same(await lookup(HOST, {}), { address: labAddress(HOST, octet), family: 4 });
  t.same(await lookup(HOST, { all: true }), [{ address: labAddress(HOST, octet), family: 4 }]);
  await t.rejects(lookup('example.com', {}), { code: 'ENOTFOUND' }, 'never resolves outside the lab');
  t.match(lab.hostsFile(), `${labAddress(HOST, octet)}\t${HOST}`);
});

t.test(
  'origins serve echo, sink, source and WebSocket echo on the real port with a lab-root certificate',
  async (t) => {
    const { lab, pki } = await testLab(t, await labNet(t), [https443(HOST)]);
    const agent = new https.Agent({
      ca: pki.labRoot.cert.certPem,
      lookup: lab.lookup as never,
      keepAlive: false,
    });
    t.teardown(() => agent.destroy());
    const req = (method: string, path: string, body?: Buffer, headers: Record<string, string> = {}) =>
      new Promise<{ status: number; headers: Record<string, unknown>; body: Buffer }>((resolve, reject) => {
        const r = https.request({ host: HOST, port: 443, method, path, agent, headers }, (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () =>
            resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }),
          );
        });
        r.on('error', reject);
        r.end(body);
      });

    const body = Buffer.from('x'.repeat(1000));
    const echo = await req('POST', '/echo/x?y=1', body, { 'X-Weird-Case': ' two  spaces' });
    t.equal(echo.status, 200);
    const e = JSON.parse(echo.body.toString());
    t.equal(e.requestLine, 'POST /echo/x?y=1 HTTP/1.1');
    t.equal(e.bodySha256, sha256(body));
    t.equal(e.bodyBytes, 1000);
    const head = Buffer.from(e.rawHead, 'base64').toString('latin1');
    t.match(head, /^POST \/echo\/x\?y=1 HTTP\/1\.1\r\n/);
    t.match(head, 'X-Weird-Case:  two  spaces\r\n', 'raw head keeps case and whitespace');
    t.equal(e.tls.servername, HOST);
    t.equal(echo.headers['x-proxycheck-sha256'], sha256(echo.body), 'every answer declares its own hash');

    const sink = JSON.parse((await req('PUT', '/sink', body)).body.toString());
    t.same(sink, { bytes: 1000, sha256: sha256(body) });

    const src = await req('GET', '/source?bytes=70000');
    t.equal(src.body.length, 70000);
    t.equal(src.headers['x-proxycheck-sha256'], sha256(src.body));
    t.ok(src.body.equals(sourceBytes(70000)), 'deterministic bytes');

    const ws = new WebSocket(`wss://${HOST}/ws`, {
      ca: pki.labRoot.cert.certPem,
      lookup: lab.lookup as never,
    });
    t.teardown(() => ws.terminate());
    await new Promise((resolve, reject) => {
      ws.once('open', resolve);
      ws.once('error', reject);
    });
    const got = new Promise<Buffer>((resolve) => ws.once('message', (d) => resolve(d as Buffer)));
    ws.send(Buffer.from('ping-123'));
    t.equal((await got).toString(), 'ping-123');
  },
);

t.test('the origin certificate is rejected by a client that does not trust the lab root', async (t) => {
  const octet = await labNet(t);
  const { lab } = await testLab(t, octet, [https443(HOST)]);
  const err = await new Promise<Error>((resolve) => {
    const s = tls.connect({ host: labAddress(HOST, octet), port: 443, servername: HOST });
    s.once('error', resolve);
    s.once('secureConnect', () => resolve(new Error('connected')));
  });
  t.match(err.message, /self[- ]signed|unable to (get|verify)/i);
  t.ok(lab);
});

t.test('a busy address gives a setup error naming it; stop() frees every port', async (t) => {
  // one net on purpose: the second lab collides with the first
  const octet = await labNet(t);
  const { pki } = await testPki(t);
  const lab = await Lab.start({ pki, hosts: [https443(HOST)], net: octet });
  await t.rejects(Lab.start({ pki, hosts: [https443(HOST)], net: octet }), {
    code: 'PC_SETUP',
    message: new RegExp(
      `cannot listen on ${labAddress(HOST, octet).replace(/\./g, '\\.')}:443: .*EADDRINUSE.*--lab-net`,
    ),
  });
  await lab.stop();
  const probe = net.createServer();
  await new Promise<void>((resolve, reject) => {
    probe.once('error', reject);
    probe.listen(443, labAddress(HOST, octet), resolve);
  });
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  t.pass('port 443 on the lab address is free again');
});
