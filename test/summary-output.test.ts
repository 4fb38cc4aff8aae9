/**
 * The default terminal output (harness/report/summary.ts): the verdict first, a profile x proxy
 * matrix of pass/fail/other counts, the unexpected results width-limited with their remedy, colour
 * only on a terminal and never with NO_COLOR.
 */
import t from 'tap';
import { type CheckResult, RESULT_SCHEMA_ID, type RunReport, summarize } from '../harness/model.ts';
import { renderSummary, totalsLine, wantColor } from '../harness/report/summary.ts';

function result(
  proxy: string,
  profile: string,
  check: string,
  outcome: CheckResult['outcome'],
  expected = outcome,
): CheckResult {
  return {
    id: `${proxy}/${profile}/h.test:443/${check}`,
    proxy,
    profile,
    endpoint: 'h.test:443',
    check,
    outcome,
    expected,
    matched: outcome === expected,
    message: `${check} ${outcome}: ${'x'.repeat(300)}`,
    evidence: {},
    remediation: outcome === 'fail' ? `fix it ${'y'.repeat(300)}` : '',
    durationMs: 1,
  };
}

function report(results: CheckResult[]): RunReport {
  return {
    schema: RESULT_SCHEMA_ID,
    startedAt: '',
    finishedAt: '',
    tool: { name: 'proxycheck', version: '0' },
    proxies: [
      { id: 'p1', kind: 'plain', runtime: 'in-process', version: 'v1' },
      { id: 'p2', kind: 'plain', runtime: 'in-process', version: 'v1' },
    ],
    results,
    summary: summarize(results),
  };
}

t.test('green: verdict first, matrix cells, nothing unexpected', async (t) => {
  const r = report([
    result('p1', 'a', 'connect', 'pass'),
    result('p1', 'a', 'payload', 'pass'),
    result('p2', 'a', 'connect', 'fail'),
    result('p2', 'a', 'payload', 'dependency_fail'),
  ]);
  const out = renderSummary(r, { width: 80 });
  const lines = out.trimEnd().split('\n');
  t.equal(lines[0], 'OK: all 4 results as expected');
  t.equal(lines[1], totalsLine(r));
  t.equal(
    totalsLine(r),
    '4 results: 2 pass, 1 fail, 0 warn, 0 skip, 1 dependency_fail; 4 as expected, 0 not',
  );
  t.match(out, /^a\s+2\/0\/0\s+0\/1\/1$/m);
  t.notMatch(out, /Not as expected/);
  t.notOk(out.includes('\x1b['), 'no colour unless asked');
});

t.test('red: the unexpected results, width-limited, with the remedy; cells marked', async (t) => {
  const r = report([result('p1', 'a', 'connect', 'fail', 'pass'), result('p2', 'a', 'connect', 'pass')]);
  const out = renderSummary(r, { width: 72 });
  t.match(out.split('\n')[0], 'NOT AS EXPECTED: 1 of 2 results');
  t.match(out, /^a\s+0\/1\/0!/m);
  t.match(out, /Not as expected \(1\):\np1\/a\/h\.test:443\/connect: fail, expected pass\n/);
  t.match(out, /\n {2}remedy: fix it y+…\n/);
  t.ok(
    out.split('\n').every((l) => l.length <= 72 || /^cells:|^\d+ results: /.test(l)),
    'every line but the totals (read by tools, never cut) fits the width',
  );
});

t.test('colour on a terminal only, and never with NO_COLOR', async (t) => {
  t.equal(wantColor({ isTTY: true }, {}), true);
  t.equal(wantColor({ isTTY: true }, { NO_COLOR: '1' }), false);
  t.equal(wantColor({ isTTY: false }, {}), false);
  const out = renderSummary(report([result('p1', 'a', 'connect', 'fail', 'pass')]), { color: true });
  t.ok(out.startsWith('\x1b[31mNOT AS EXPECTED'), 'red verdict on a terminal');
});

t.test('many proxies: the matrix is split into blocks that fit the width', async (t) => {
  const r = report([result('p1', 'a', 'connect', 'pass')]);
  r.proxies = Array.from({ length: 8 }, (_, i) => ({
    id: `squid-proxy-${i}`,
    kind: 'plain',
    runtime: 'process',
    version: 'v',
  }));
  const out = renderSummary(r, { width: 100 });
  t.ok(
    out.split('\n').every((l) => l.length <= 100 || /^cells:/.test(l)),
    'no line wider than 100',
  );
  t.ok((out.match(/^profile/gm) ?? []).length >= 2, 'the columns wrap into blocks');
});
