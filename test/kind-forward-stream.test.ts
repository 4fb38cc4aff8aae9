/**
 * Forwarded plain HTTP (`http-forward`) and raw binary streams (`tls-stream`, `tcp-stream`)
 * through real proxies: proxy-chain, squid (process) and test proxies that misbehave on purpose.
 */
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { SquidProxy } from '../harness/proxies/squid/squid.ts';
import { runMatrix } from '../harness/runner/run.ts';
import { loadScenarios } from '../harness/scenarios.ts';
import { MisbehavingForwardProxy } from './helpers/forward-proxy.ts';
import { labNet } from './helpers/lab-net.ts';
import { requireComponent, squidProblem } from './helpers/requirements.ts';

const scenarios = loadScenarios({
  dir: fileURLToPath(new URL('../fixtures/scenarios-streams/', import.meta.url)),
});
const FORWARD = 'repo.proxycheck.test:80';
type Report = Awaited<ReturnType<typeof runMatrix>>;
const get = (r: Report, proxy: string, endpoint: string, check: string) =>
  r.results.find((x) => x.proxy === proxy && x.endpoint === endpoint && x.check === check);

t.test('forwarded HTTP through proxy-chain and misbehaving forwarders', async (t) => {
  const report = await runMatrix({
    proxies: [
      'chain-plain',
      'chain-auth',
      new MisbehavingForwardProxy('leak'),
      new MisbehavingForwardProxy('rewrite'),
      new MisbehavingForwardProxy('deny'),
    ],
    profiles: ['forward'],
    scenarios,
    labNet: await labNet(t),
  });
  const plain = get(report, 'chain-plain', FORWARD, 'payload');
  t.equal(get(report, 'chain-plain', FORWARD, 'forward')?.outcome, 'pass');
  t.equal(plain?.outcome, 'pass', String(plain?.message));
  t.match(plain?.message, /3 request\(s\), \d+ body bytes, every SHA-256 equal/);
  const steps = plain?.evidence.steps as Array<Record<string, unknown>>;
  t.equal(steps[2]?.bytes, 1048576, 'the 1 MiB download arrived whole');

  // proxy-chain passes the agent's Proxy-Connection on to the origin: a real (minor) flaw
  const ph = get(report, 'chain-plain', FORWARD, 'headers');
  t.equal(ph?.outcome, 'warn', String(ph?.message));
  t.match(ph?.message, /hop-by-hop header Proxy-Connection was passed on/);
  const hs = ph?.evidence.steps as Array<{ sent: string; received: string }>;
  t.match(hs[0]?.sent, /^GET http:\/\/repo\.proxycheck\.test\/echo\/metadata\?pc=/, 'absolute-form sent');
  t.match(hs[0]?.received, /^GET \/echo\/metadata\?pc=\S+ HTTP\/1\.1\r\n/, 'origin-form received');
  t.match(hs[0]?.received, /X-Agent-Id: agent-0042/i, 'end-to-end header kept');

  // chain-auth consumes the credentials: they never reach the origin
  const auth = get(report, 'chain-auth', FORWARD, 'headers');
  t.notMatch(JSON.stringify(auth?.evidence), /Proxy-Authorization: Basic [^<]/i);
  t.equal(get(report, 'chain-auth', FORWARD, 'forward')?.outcome, 'pass');

  const leak = get(report, 'test-forward-leak', FORWARD, 'headers');
  t.equal(leak?.outcome, 'fail');
  t.match(leak?.message, /Proxy-Authorization reached the origin/);
  t.match(leak?.remediation, /must consume it/);
  t.notMatch(JSON.stringify(leak?.evidence), /pa55-word|YWdlbnQ6cGE1NS13b3Jk/, 'the password is redacted');

  const rewrite = get(report, 'test-forward-rewrite', FORWARD, 'headers');
  t.equal(rewrite?.outcome, 'fail');
  t.match(
    rewrite?.message,
    /User-Agent sent as "ESET Management Agent", arrived as "Mozilla\/5\.0 \(rewritten\)"/,
  );

  const deny = get(report, 'test-forward-deny', FORWARD, 'forward');
  t.equal(deny?.outcome, 'fail');
  t.match(deny?.message, /answered 403, from the proxy itself, not the origin/);
  t.match(deny?.remediation, /Allow plain HTTP to repo\.proxycheck\.test on port 80/);
  t.equal(get(report, 'test-forward-deny', FORWARD, 'payload')?.outcome, 'dependency_fail');
});

t.test('binary streams through proxy-chain: plain tunnels them, mitm breaks them', async (t) => {
  const report = await runMatrix({
    proxies: ['chain-plain', 'chain-mitm'],
    profiles: ['streams'],
    scenarios,
    labNet: await labNet(t),
  });
  for (const ep of [
    'agent.proxycheck.test:13000',
    'agent.proxycheck.test:2222',
    'agent.proxycheck.test:443',
  ]) {
    const p = get(report, 'chain-plain', ep, 'payload');
    t.equal(p?.outcome, 'pass', `${ep}: ${p?.message}`);
  }
  t.match(
    get(report, 'chain-plain', 'agent.proxycheck.test:13000', 'payload')?.message,
    /3 binary frames of 20000 bytes through the TLS session/,
  );
  const tlsMitm = get(report, 'chain-mitm', 'agent.proxycheck.test:13000', 'tls-interception');
  t.equal(tlsMitm?.outcome, 'warn', 'intercepted, and the row does not forbid it');
  t.match(tlsMitm?.message, /re-signed by "proxycheck Corporate Inspection CA"/);
  t.equal(get(report, 'chain-mitm', 'agent.proxycheck.test:13000', 'payload')?.outcome, 'dependency_fail');
  // a TLS-intercepting proxy that expects TLS on every CONNECT cannot carry a non-TLS protocol
  const raw = get(report, 'chain-mitm', 'agent.proxycheck.test:2222', 'payload');
  t.equal(raw?.outcome, 'fail');
  t.match(raw?.message, /frame 1 of 3: (the tunnel closed after 0 of 20004 bytes|.*within)/);
});

const squid = requireComponent(t, 'squid', squidProblem());

t.test(
  'squid stock policy: 80 forwarded cleanly, CONNECT only to 443',
  { ...squid, timeout: 120_000 },
  async (t) => {
    const report = await runMatrix({
      proxies: [new SquidProxy({ flavour: 'default', runtime: 'process' })],
      profiles: ['forward', 'streams'],
      scenarios,
      labNet: await labNet(t),
    });
    const id = 'squid-default';
    t.equal(get(report, id, FORWARD, 'forward')?.outcome, 'pass');
    t.equal(get(report, id, FORWARD, 'payload')?.outcome, 'pass');
    const h = get(report, id, FORWARD, 'headers');
    t.equal(h?.outcome, 'pass', String(h?.message));
    t.match(h?.message, /the proxy added .*via/i, 'squid adds Via, which is allowed');
    for (const port of [13000, 2222]) {
      const c = get(report, id, `agent.proxycheck.test:${port}`, 'connect');
      t.equal(c?.outcome, 'fail');
      t.match(c?.message, /answered "HTTP\/1\.1 403 Forbidden"/);
      t.match(c?.remediation, `acl SSL_ports port ${port}`);
      t.equal(get(report, id, `agent.proxycheck.test:${port}`, 'payload')?.outcome, 'dependency_fail');
    }
    t.equal(
      get(report, id, 'agent.proxycheck.test:443', 'payload')?.outcome,
      'pass',
      'raw TCP on 443 is tunnelled',
    );
  },
);
