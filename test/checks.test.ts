/**
 * Every check passes on a proxy that behaves and fails on one that really misbehaves, over real
 * sockets: the verdicts below are produced by the runner, not written down.
 */
import t, { type Test } from 'tap';
import type { CheckResult } from '../harness/model.ts';
import { ChainProxy } from '../harness/proxies/chain.ts';
import type { ProxyUnderTest } from '../harness/proxies/types.ts';
import { runMatrix } from '../harness/runner/run.ts';
import { brokenProxy, withCredentials } from './helpers/adapters.ts';
import { resultsPerProxy } from './helpers/counts.ts';
import { fixtureScenarios } from './helpers/fixtures.ts';
import { labNet } from './helpers/lab-net.ts';
import { RefusingProxy } from './helpers/refusing-proxy.ts';

const scenarios = fixtureScenarios();

async function run(
  t: Test,
  proxy: ProxyUnderTest,
  profiles: string[],
  extra: { trustCorporateCa?: boolean } = {},
) {
  return runMatrix({ proxies: [proxy], profiles, scenarios, labNet: await labNet(t), ...extra });
}

function byCheck(results: CheckResult[], endpoint?: string): Record<string, CheckResult> {
  return Object.fromEntries(
    results.filter((r) => !endpoint || r.endpoint === endpoint).map((r) => [r.check, r]),
  );
}

t.test('a well-behaved proxy passes every check (pinning skipped where nothing is pinned)', async (t) => {
  const report = await run(t, new ChainProxy(), ['unpinned', 'pinned']);
  const open = byCheck(report.results, 'open.proxycheck.test:443');
  const pinned = byCheck(report.results, 'pinned.proxycheck.test:443');
  for (const c of ['connect', 'tls-interception', 'payload', 'headers']) {
    t.equal(open[c]?.outcome, 'pass', `${c}: ${open[c]?.message}`);
    t.equal(pinned[c]?.outcome, 'pass', `${c} (pinned host)`);
  }
  t.equal(open.pinning?.outcome, 'skip');
  t.match(open.pinning?.message, /does not pin/);
  t.equal(pinned.pinning?.outcome, 'pass');
  t.match(open.connect?.message, '"HTTP/1.1 200 Connection Established"');
  t.equal(open.payload?.evidence.steps && (open.payload.evidence.steps as unknown[]).length, 2);
  t.ok(
    report.results.every((r) => r.matched && r.remediation === ''),
    'nothing to remedy',
  );
});

t.test('connect fails with a quoted 403 and the squid line that fixes it', async (t) => {
  const report = await run(t, new RefusingProxy(), ['odd-port']);
  const r = byCheck(report.results);
  t.equal(r.connect?.outcome, 'fail');
  t.equal(
    r.connect?.message,
    'CONNECT odd-port.proxycheck.test:13000 answered "HTTP/1.1 403 Forbidden", not 200 (X-Squid-Error: ERR_ACCESS_DENIED 0)',
  );
  t.match(r.connect?.evidence, { statusCode: 403, answerHead: /X-Squid-Error: ERR_ACCESS_DENIED/ });
  t.match(r.connect?.remediation, 'acl SSL_ports port 13000');
  for (const c of ['tls-interception', 'pinning', 'payload', 'headers']) {
    t.equal(r[c]?.outcome, 'dependency_fail', `${c} depends on connect`);
    t.match(r[c]?.evidence, { dependsOn: 'connect' });
  }
  t.equal(r.connect?.matched, false, 'expected pass, so it does not match');
});

t.test('a wrong proxy password gives a 407 verdict', async (t) => {
  const report = await run(
    t,
    withCredentials(new ChainProxy({ auth: true }), 'auth-wrong', { username: 'agent', password: 'not-it' }),
    ['unpinned'],
  );
  const r = byCheck(report.results);
  t.equal(r.connect?.outcome, 'fail');
  t.match(r.connect?.message, /answered "HTTP\/1\.1 407 /);
  t.match(r.connect?.remediation, /credentials/);
  t.notMatch(JSON.stringify(report), /not-it|YWdlbnQ6bm90LWl0/, 'the password is not in the report');
});

t.test('interception: fail on a must-not-inspect host, warn on another; pinning fails closed', async (t) => {
  const report = await run(t, new ChainProxy({ mitm: true }), ['unpinned', 'pinned'], {
    trustCorporateCa: true,
  });
  const open = byCheck(report.results, 'open.proxycheck.test:443');
  const pinned = byCheck(report.results, 'pinned.proxycheck.test:443');
  t.equal(
    open['tls-interception']?.outcome,
    'warn',
    'an inspected host the vendor allows to inspect is a warning',
  );
  t.match(open['tls-interception']?.message, 're-signed by "proxycheck Corporate Inspection CA"');
  t.equal(open.payload?.outcome, 'pass', 'with the corporate CA deployed, an unpinned agent still works');
  t.equal(open.headers?.outcome, 'pass', 'chain-mitm relays bytes unchanged');
  t.equal(pinned['tls-interception']?.outcome, 'fail');
  t.equal(pinned.pinning?.outcome, 'fail');
  t.match(pinned.pinning?.evidence, { presentedSpki: String, expectedSpki: [String] });
  t.not(
    pinned.pinning?.evidence.presentedSpki,
    (pinned.pinning?.evidence.expectedSpki as string[] | undefined)?.[0],
  );
  t.match(pinned.pinning?.remediation, /ssl_bump splice/);
  t.equal(pinned.payload?.outcome, 'dependency_fail');
  t.match(pinned.payload?.message, /refused the TLS session.*pinned key mismatch/);
});

t.test('payload fails when a proxy rewrites one body byte', async (t) => {
  const flipOne = (chunk: Buffer, offset: number) => {
    const target = 2000; // inside the first report body, past its head
    if (target < offset || target >= offset + chunk.length) return chunk;
    const out = Buffer.from(chunk);
    out[target - offset] = (out[target - offset] ?? 0) ^ 0x01;
    return out;
  };
  const report = await run(
    t,
    new ChainProxy({ mitm: true, tamper: flipOne, id: 'tamper-body' }),
    ['unpinned'],
    {
      trustCorporateCa: true,
    },
  );
  const r = byCheck(report.results);
  t.equal(r.payload?.outcome, 'fail');
  t.match(
    r.payload?.message,
    /^report: origin received body SHA-256 \w+…, not \w+… \(20000 of 20000 bytes\)/,
  );
  t.equal(r.headers?.outcome, 'pass', 'the heads were not touched');
});

t.test('headers fail when a proxy rewrites one header inside the tunnel', async (t) => {
  const rewrite = (chunk: Buffer) =>
    Buffer.from(chunk.toString('latin1').replace('X-Agent-Id: device-42', 'X-Agent-Id: device-43'), 'latin1');
  const report = await run(
    t,
    new ChainProxy({ mitm: true, tamper: rewrite, id: 'tamper-header' }),
    ['unpinned'],
    { trustCorporateCa: true },
  );
  const r = byCheck(report.results);
  t.equal(r.headers?.outcome, 'fail');
  t.equal(
    r.headers?.message,
    'report: head line 5 sent as "X-Agent-Id: device-42", arrived as "X-Agent-Id: device-43"',
  );
  t.equal(r.payload?.outcome, 'pass', 'bodies were not touched');
});

t.test('a proxy that cannot start gives setup_fail with its evidence, never a pass', async (t) => {
  const report = await run(t, brokenProxy('broken'), ['unpinned']);
  t.equal(report.results.length, resultsPerProxy(scenarios, ['unpinned']), 'every check of every exchange');
  for (const r of report.results) {
    t.equal(r.outcome, 'setup_fail');
    t.match(r.message, 'proxy broken did not start: squid exited during start-up');
    t.match(r.evidence, { log: /Bungled/ });
  }
});

t.test(
  'expectations: chain-mitm on the FlexxAgent slice fails as expected, so the run is green',
  async (t) => {
    const report = await runMatrix({
      proxies: ['chain-mitm'],
      profiles: ['flexxagent'],
      labNet: await labNet(t),
    });
    const r = byCheck(report.results, 'west-eu.agent-api.analyzer.flexxible.com:443');
    t.same(Object.fromEntries(Object.entries(r).map(([k, v]) => [k, [v.outcome, v.expected, v.matched]])), {
      connect: ['pass', 'pass', true],
      'tls-interception': ['fail', 'fail', true],
      pinning: ['fail', 'fail', true],
      payload: ['dependency_fail', 'dependency_fail', true],
      headers: ['dependency_fail', 'dependency_fail', true],
    });
    t.match(r.pinning?.expectedReason, /fails closed/);
    t.equal(report.summary.unmatched, 0);
  },
);
