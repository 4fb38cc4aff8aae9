/**
 * The in-process engine as an HTTPS proxy (`tls: true`: proxy-chain's HTTPS listener, a certificate
 * for its name from the lab CA) and as the child of a chain (`parent:`, proxy-chain's upstream
 * proxy): the agent's TLS to the proxy is checked, and a port the child allows but its parent
 * refuses is refused, so the traffic really goes through the parent.
 */
import t from 'tap';
import { startTls } from '../harness/agent/tls.ts';
import { openTunnel } from '../harness/agent/tunnel.ts';
import { judgeConnect } from '../harness/checks/connect.ts';
import { engineFor } from '../harness/proxies/engines.ts';
import { loadScenarios } from '../harness/scenarios.ts';
import { startProxy, testLab } from './helpers/fixtures.ts';
import { labNet } from './helpers/lab-net.ts';

const host = 'origin.proxycheck.test';
const hosts = [
  {
    host,
    ports: [
      { port: 443, transport: 'https' as const },
      { port: 5223, transport: 'tls' as const },
    ],
  },
];

t.test('tls: true on the chain engine: an HTTPS proxy the agent checks', async (t) => {
  const { lab, runDir, pki } = await testLab(t, await labNet(t), hosts);
  const set = loadScenarios();
  const p = await startProxy(
    t,
    engineFor({ id: 't-https', engine: 'chain', tls: true, file: 'test' }, set),
    lab,
    runDir,
  );
  t.match(p.url, /^https:\/\/127\.0\.0\.1:\d+$/);
  t.equal(p.tls?.servername, 't-https.proxy.proxycheck.test');
  const tun = await openTunnel({
    proxy: { host: p.host, port: p.port, ...(p.tls ? { tls: p.tls } : {}) },
    target: { host, port: 443 },
  });
  t.ok(tun.ok, tun.ok ? 'CONNECT over TLS to the proxy' : (tun.error ?? ''));
  if (tun.ok) {
    const inner = await startTls(tun.socket, { servername: host, ca: [pki.labRoot.cert.certPem] });
    t.ok(inner.socket, 'and TLS to the origin inside it');
    inner.socket?.destroy();
  }
  const plain = await openTunnel({
    proxy: { host: p.host, port: p.port },
    target: { host, port: 443 },
    answerTimeoutMs: 2_000,
  });
  t.notOk(plain.ok, 'a plain-TCP CONNECT gets no tunnel from an HTTPS proxy');
  const untrusted = await openTunnel({
    proxy: {
      host: p.host,
      port: p.port,
      tls: { ...(p.tls as NonNullable<typeof p.tls>), ca: [pki.corporate.cert.certPem] },
    },
    target: { host, port: 443 },
  });
  t.notOk(untrusted.ok, 'a proxy certificate the agent does not trust: no tunnel');
});

t.test('parent: on the chain engine: the child forwards through its parent', async (t) => {
  const { lab, runDir } = await testLab(t, await labNet(t), hosts);
  const set = loadScenarios();
  set.proxies.set('t-parent', { id: 't-parent', engine: 'chain', connectPorts: [443], file: 'test' });
  const child = { id: 't-child', engine: 'chain' as const, file: 'test' };
  const alone = await startProxy(t, engineFor(child, set), lab, runDir);
  const chained = await startProxy(t, engineFor({ ...child, parent: 't-parent' }, set), lab, runDir);
  const at = (p: { host: string; port: number }) => ({ host: p.host, port: p.port });
  const direct = await openTunnel({ proxy: at(alone), target: { host, port: 5223 } });
  t.ok(direct.ok, 'the child alone tunnels to 5223');
  if (direct.ok) direct.socket.destroy();
  const ok = await openTunnel({ proxy: at(chained), target: { host, port: 443 } });
  t.ok(ok.ok, ok.ok ? 'through the chain to 443' : (ok.error ?? ''));
  if (ok.ok) ok.socket.destroy();
  const refused = await openTunnel({ proxy: at(chained), target: { host, port: 5223 } });
  t.notOk(refused.ok, 'through the chain, 5223 is refused: the parent allows 443 only');
  const answer = refused.ok ? undefined : refused.answer;
  t.equal(answer?.statusLine, 'HTTP/1.1 590 UPSTREAM403', "proxy-chain relays its parent's 403");
  if (answer) {
    const verdict = judgeConnect(`${host}:5223`, refused, 0);
    t.match(
      verdict.evidence?.refusedBy,
      /^the parent proxy \(it answered 403/,
      'the connect verdict names the parent as the refusing hop',
    );
    t.match(verdict.message, /; refused by the parent proxy \(it answered 403/, 'in its message too');
  }
});
