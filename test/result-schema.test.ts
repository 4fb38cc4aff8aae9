/**
 * Real `proxycheck run --json` output validates against scenarios/schema/result.schema.json
 * (ajv + ajv-formats, date-time checked), to a file and to stdout (`--json -`); the validator
 * itself rejects a broken report, so the check can fail.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Ajv } from 'ajv';
import addFormats from 'ajv-formats';
import t from 'tap';
import { OUTCOMES } from '../harness/model.ts';
import { loadScenarios } from '../harness/scenarios.ts';
import { cli } from './helpers/cli.ts';
import { expectedResults } from './helpers/counts.ts';
import { labNet } from './helpers/lab-net.ts';

const SCHEMA = JSON.parse(
  readFileSync(new URL('../scenarios/schema/result.schema.json', import.meta.url), 'utf8'),
);
const ajv = new Ajv({ strict: false, allErrors: true });
addFormats.default(ajv);
const validate = ajv.compile(SCHEMA);

function errors(): string {
  return ajv.errorsText(validate.errors);
}

t.test('run --json FILE and --json - both write a valid proxycheck/result@2 report', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'proxycheck-schema-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'report.json');
  const proxies = ['chain-plain', 'chain-mitm'];
  const total = expectedResults(loadScenarios(), proxies, ['flexxagent']);
  const args = [
    'run',
    '--proxies',
    proxies.join(','),
    '--profiles',
    'flexxagent',
    '--lab-net',
    String(await labNet(t)),
  ];
  const toFile = await cli([...args, '--json', file], { timeoutMs: 120_000 });
  const toStdout = await cli([...args, '--json', '-'], { timeoutMs: 120_000 });

  for (const [where, run, text] of [
    ['file', toFile, readFileSync(file, 'utf8')],
    ['stdout', toStdout, toStdout.stdout],
  ] as const) {
    const report = JSON.parse(text); // stdout holds the JSON alone: no table around it
    t.equal(run.code, report.summary.unmatched === 0 ? 0 : 1, `${where}: exit code follows the report`);
    t.ok(validate(report), `${where}: ${errors()}`);
    t.equal(report.schema, 'proxycheck/result@2');
    t.same(
      report.proxies.map((p: { id: string }) => p.id),
      ['chain-plain', 'chain-mitm'],
    );
    t.equal(report.results.length, total, `${where}: every check of every exchange, per proxy`);
    const ids = report.results.map((r: { id: string }) => r.id);
    t.equal(new Set(ids).size, ids.length, `${where}: result ids are unique`);
    for (const r of report.results) {
      t.equal(r.id, `${r.proxy}/${r.profile}/${r.endpoint}/${r.check}`, 'id = proxy/profile/endpoint/check');
      t.equal(r.matched, r.outcome === r.expected, `${r.id}: matched = outcome equals expected`);
    }
    // summary agrees with the results
    for (const o of OUTCOMES) {
      t.equal(
        report.summary[o],
        report.results.filter((r: { outcome: string }) => r.outcome === o).length,
        `${where}: summary.${o}`,
      );
    }
    t.equal(report.summary.total, report.results.length);
    t.equal(
      report.summary.unmatched,
      report.results.filter((r: { matched: boolean }) => !r.matched).length,
      `${where}: summary.unmatched`,
    );
    t.ok(Date.parse(report.finishedAt) >= Date.parse(report.startedAt));
  }
});

t.test('the schema check can fail: broken reports are rejected', async (t) => {
  const good = {
    schema: 'proxycheck/result@2',
    startedAt: '2025-01-01T00:00:00.000Z',
    finishedAt: '2025-01-01T00:00:01.000Z',
    tool: { name: 'proxycheck', version: '0.1.0' },
    proxies: [{ id: 'p', kind: 'k', runtime: 'r', version: 'v' }],
    results: [
      {
        id: 'p/prof/h.test:443/connect',
        proxy: 'p',
        profile: 'prof',
        endpoint: 'h.test:443',
        check: 'connect',
        outcome: 'pass',
        expected: 'pass',
        matched: true,
        message: 'ok',
        evidence: {},
        remediation: '',
        durationMs: 1,
      },
    ],
    summary: {},
  };
  t.ok(validate(good), errors());
  const broken: Array<[string, (r: typeof good) => unknown]> = [
    ['an outcome outside the enum', (r) => ({ ...r, results: [{ ...r.results[0], outcome: 'passed' }] })],
    ['a start time that is not date-time', (r) => ({ ...r, startedAt: 'yesterday' })],
    ['a result without evidence', (r) => ({ ...r, results: [{ ...r.results[0], evidence: undefined }] })],
    ['an empty message', (r) => ({ ...r, results: [{ ...r.results[0], message: '' }] })],
    ['another schema id', (r) => ({ ...r, schema: 'proxycheck/result@1' })],
  ];
  for (const [what, mutate] of broken) {
    t.notOk(validate(JSON.parse(JSON.stringify(mutate(good)))), `rejects ${what}`);
  }
});
