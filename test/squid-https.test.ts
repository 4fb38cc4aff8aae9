import t from 'tap';
import { connectToProxy, openTunnel } from '../harness/agent/tunnel.ts';
import { proxyTlsName, unsupportedKnob } from '../harness/proxies/definition.ts';
import { SquidProxy } from '../harness/proxies/squid/squid.ts';
import { runPassing } from './helpers/cli.ts';
import { https443, startProxy, testLab } from './helpers/fixtures.ts';
import { labNet } from './helpers/lab-net.ts';
import { requireComponent, squidProblem } from './helpers/requirements.ts';

const squid = requireComponent(t, 'squid', squidProblem());

t.test('squid on an https_port: TLS to the proxy, CONNECT inside it', squid, async (t) => {
  const { lab, runDir, pki } = await testLab(t, await labNet(t), [https443('origin.proxycheck.test')]);
  const proxy = new SquidProxy({
    id: 'squid-https',
    runtime: 'process',
    policy: { connectPorts: [443], auth: 'none', inspection: { mode: 'none', hosts: [] }, tls: true },
  });
  const started = await startProxy(t, proxy, lab, runDir);
  t.match(started.url, /^https:\/\/127\.0\.0\.1:\d+$/, 'the proxy URL is https');
  t.same(started.tls?.servername, proxyTlsName('squid-https'));
  const target = { host: 'origin.proxycheck.test', port: 443 };
  const at = { host: started.host, port: started.port, resolve: (h: string) => lab.addressOf(h) };
  const trust = { ca: [pki.labRoot.cert.certPem], servername: proxyTlsName('squid-https') };

  const ok = await openTunnel({ proxy: { ...at, tls: trust }, target, connectTimeoutMs: 5_000 });
  t.ok(ok.ok, ok.ok ? 'CONNECT through TLS to squid' : (ok.error ?? 'no tunnel'));
  t.match(ok.ok ? ok.answer.statusLine : '', /^HTTP\/1\.1 200 /);
  if (ok.ok) ok.socket.destroy();

  const plain = await openTunnel({ proxy: at, target, connectTimeoutMs: 5_000, answerTimeoutMs: 5_000 });
  t.notOk(plain.ok, 'a plain-TCP CONNECT to the https_port gets no tunnel');

  const otherCa = await openTunnel({
    proxy: { ...at, tls: { ...trust, ca: [pki.corporate.cert.certPem] } },
    target,
  });
  t.notOk(otherCa.ok, 'a proxy certificate from a CA the agent does not trust: no tunnel');
  t.match(otherCa.ok ? '' : otherCa.error, /certificate|verify/i);

  const otherName = await openTunnel({
    proxy: { ...at, tls: { ...trust, servername: 'elsewhere.proxycheck.test' } },
    target,
  });
  t.notOk(otherName.ok, 'a certificate for another name: no tunnel');
  t.match(otherName.ok ? '' : otherName.error, /elsewhere\.proxycheck\.test|altname/i);

  // the plain-HTTP forward path dials the proxy the same way
  const s = await connectToProxy({ ...at, tls: trust }, 5_000);
  t.ok(s, 'connectToProxy speaks TLS to it');
  s.destroy();
  await t.rejects(
    connectToProxy({ ...at, tls: { ...trust, ca: [pki.corporate.cert.certPem] } }, 5_000),
    /TLS to the proxy \(squid-https\.proxy\.proxycheck\.test\): .*certificate/i,
  );
});

t.test('tls with inspection is a scenario error on either engine', async (t) => {
  t.match(
    unsupportedKnob({ id: 'x', engine: 'squid', tls: true, inspection: { mode: 'all' } }),
    /^engine squid cannot honour tls with inspection: .*https_port/,
  );
  t.match(
    unsupportedKnob({ id: 'x', engine: 'chain', tls: true, inspection: { mode: 'all' } }),
    /^engine chain cannot honour tls with inspection: /,
  );
  t.equal(unsupportedKnob({ id: 'x', engine: 'chain', tls: true }), undefined);
  t.equal(unsupportedKnob({ id: 'x', engine: 'squid', tls: true }), undefined);
});

t.test('the built-in squid-https passes the flexxagent profile', squid, async (t) => {
  const report = await runPassing(t, {
    proxies: ['squid-https'],
    profiles: 'flexxagent',
    runtime: 'process',
    labNet: await labNet(t),
  });
  t.match(report.proxies[0]?.url, /^https:\/\//, 'the report names an https proxy');
});
