/**
 * TAP 14 of a real run, read back with tap-parser (node-tap's own parser): a test point per
 * result, `not ok` exactly for unexpected outcomes, `# SKIP` for matched outcomes under which the
 * check did not run, YAML diagnostics that round-trip. Also `validate --tap -` end to end: stdout
 * carries only TAP.
 */

import t, { type Test } from 'tap';
import { type FinalResults, Parser, type Result } from 'tap-parser';
import { labAddress } from '../harness/lab/addresses.ts';
import { type CheckResult, type RunReport, summarize } from '../harness/model.ts';
import { ChainProxy } from '../harness/proxies/chain.ts';
import { renderTap } from '../harness/report/tap.ts';
import { runMatrix } from '../harness/runner/run.ts';
import { loadScenarios } from '../harness/scenarios.ts';
import { brokenProxy } from './helpers/adapters.ts';
import { cli } from './helpers/cli.ts';
import { resultsPerProxy } from './helpers/counts.ts';
import { customerProxy } from './helpers/customer-proxy.ts';
import { labNet } from './helpers/lab-net.ts';

const NOT_RUN = ['skip', 'dependency_fail', 'setup_fail', 'harness_fail'];

function parseTap(text: string): Promise<{ asserts: Result[]; final: FinalResults; version: number }> {
  return new Promise((resolve) => {
    const asserts: Result[] = [];
    let version = 0;
    const p = new Parser((final) => resolve({ asserts, final, version }));
    p.on('assert', (a: Result) => asserts.push(a));
    p.on('version', (v: number) => {
      version = v;
    });
    p.end(text);
  });
}

function checkAgainst(t: Test, asserts: Result[], results: CheckResult[]): void {
  t.equal(asserts.length, results.length, 'a test point per result');
  results.forEach((r, i) => {
    const a = asserts[i];
    t.equal(a?.id, i + 1);
    t.equal(a?.ok, r.matched, `${r.id}: ok exactly when matched`);
    const skip = r.matched && NOT_RUN.includes(r.outcome);
    t.equal(Boolean(a?.skip), skip, `${r.id}: SKIP directive ${skip ? '' : 'not '}set`);
    // (a message with line breaks or control characters is flattened: see the escaping test)
    if (skip && ![...r.message].some((ch) => ch.charCodeAt(0) < 0x20))
      t.equal(a?.skip, `${r.outcome}: ${r.message}`, `${r.id}: skip reason`);
    t.ok(a?.name.startsWith(r.id), `${r.id}: described by its id`);
    t.same(
      a?.diag,
      JSON.parse(
        JSON.stringify({
          id: r.id,
          outcome: r.outcome,
          expected: r.expected,
          ...(r.expectedReason !== undefined ? { expectedReason: r.expectedReason } : {}),
          matched: r.matched,
          message: r.message,
          ...(r.remediation ? { remediation: r.remediation } : {}),
          evidence: r.evidence,
          durationMs: r.durationMs,
        }),
      ),
      `${r.id}: YAML diagnostics round-trip`,
    );
  });
}

t.test('a real run through tap-parser', async (t) => {
  const report = await runMatrix({
    proxies: ['chain-plain', 'chain-mitm', new ChainProxy({ id: 'test-mitm-unexpected', mitm: true })],
    profiles: ['flexxagent'],
    labNet: await labNet(t),
  });
  const { asserts, final, version } = await parseTap(renderTap(report));
  t.equal(version, 14);
  t.same(final.plan, { start: 1, end: report.results.length, skipAll: false, skipReason: '', comment: '' });
  t.equal(final.fail, report.summary.unmatched, 'failures = unmatched results');
  t.ok(report.summary.unmatched > 0 && report.summary.matched > 0, 'both kinds in this run');
  t.equal(final.ok, false);
  checkAgainst(t, asserts, report.results);
  const expected = asserts.find(
    (a) => a.name.includes('chain-mitm/') && a.name.includes('/tls-interception'),
  );
  t.equal(expected?.ok, true);
  t.match(expected?.name, /\(fail, as expected\)$/);
  const unexpected = asserts.find(
    (a) => a.name.startsWith('test-mitm-unexpected/') && a.name.includes('/tls-interception'),
  );
  t.equal(unexpected?.ok, false);
  t.match(unexpected?.name, /\(fail, expected pass\)$/);
  t.match(unexpected?.diag, { remediation: /Exclude .* from TLS inspection/ });
});

t.test('setup_fail of a proxy we start is not ok, with the log in the diagnostics', async (t) => {
  const report = await runMatrix({
    proxies: [brokenProxy('test-broken')],
    profiles: ['flexxagent'],
    labNet: await labNet(t),
  });
  const { asserts, final } = await parseTap(renderTap(report));
  t.equal(final.fail, report.results.length);
  checkAgainst(t, asserts, report.results);
  t.match(asserts[0]?.diag, { outcome: 'setup_fail', evidence: { log: /Bungled squid\.conf/ } });
});

t.test('escaping: # and \\ in descriptions, YAML markers and control characters in values', async (t) => {
  const nasty =
    'a # TODO not really \\ # SKIP nope\n...\n---\n  ...\nnot ok 99 - fake\u0000\u0001\u001b\ud800';
  const base: CheckResult = {
    id: 'p # TODO x/prof/h.test:443/odd-check',
    proxy: 'p # TODO x',
    profile: 'prof',
    endpoint: 'h.test:443',
    check: 'odd-check',
    outcome: 'fail',
    expected: 'pass',
    matched: false,
    message: nasty,
    evidence: { raw: nasty, list: ['...', '---', '# x'], n: 1 },
    remediation: nasty,
    durationMs: 3,
  };
  const results: CheckResult[] = [
    base,
    {
      ...base,
      id: 'p # TODO x/prof/h.test:443/other',
      check: 'other',
      outcome: 'skip',
      expected: 'skip',
      matched: true,
    },
    {
      ...base,
      id: 'p # TODO x/prof/h.test:443/third',
      check: 'third',
      outcome: 'pass',
      matched: true,
      remediation: '',
    },
  ];
  const report: RunReport = {
    schema: 'proxycheck/result@2',
    startedAt: '2025-01-01T00:00:00.000Z',
    finishedAt: '2025-01-01T00:00:01.000Z',
    tool: { name: 'proxycheck', version: '0.0.0-test' },
    proxies: [{ id: 'p # TODO x', kind: 'k\nnot ok 5', runtime: 'r', version: 'v' }],
    results,
    summary: summarize(results),
  };
  const text = renderTap(report);
  const { asserts, final } = await parseTap(text);
  t.equal(final.count, 3, 'no extra test point smuggled in by the text');
  t.equal(final.fail, 1);
  t.equal(final.todo, 0, 'a "# TODO" in a message is not a directive');
  t.equal(final.skip, 1);
  checkAgainst(t, asserts, results);
  t.equal(
    asserts[1]?.skip,
    'skip: a # TODO not really \\ # SKIP nope ... ---   ... not ok 99 - fake\\u0000\\u0001\\u001b\\ud800',
    'skip reason on one line, controls as visible escapes',
  );
});

t.test('validate --tap -: stdout is TAP only, read back by tap-parser', async (t) => {
  // a customer's proxy that resolves lab hosts from the lab addresses (as `lab hosts` prints them)
  const net = await labNet(t);
  const proxy = await customerProxy(t, (host) => labAddress(host, net));
  const r = await cli(
    [
      'validate',
      '--proxy',
      `http://${proxy}`,
      '--profiles',
      'flexxagent',
      '--lab-net',
      String(net),
      '--tap',
      '-',
    ],
    { timeoutMs: 90_000 },
  );
  t.equal(r.code, 0, r.stderr);
  t.match(r.stdout, /^TAP version 14\n/, 'stdout starts with the TAP header: no table before it');
  t.match(
    r.stdout,
    /^# agent flexxagent via external: go: all \d+ checks that ran passed\n[\s\S]*^1\.\.\d+$/m,
    'the agent verdict comes before the test points',
  );
  t.notMatch(r.stdout, /PROXY\s+PROFILE\s+ENDPOINT/, 'no verdict table');
  const { asserts, final } = await parseTap(r.stdout);
  t.ok(final.ok);
  t.equal(asserts.length, resultsPerProxy(loadScenarios(), ['flexxagent']), 'a test point per result');
  t.ok(
    asserts.every((a) => typeof a.diag?.id === 'string' && a.name.startsWith(a.diag.id)),
    'described by result ids',
  );
  t.equal(final.fail, 0);
  t.equal(final.plan.end, asserts.length);
});
