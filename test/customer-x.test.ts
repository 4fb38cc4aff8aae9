/**
 * The acceptance case: a customer's proxy written as a definition and run through the CLI on the
 * profiles it concerns (flexxagent, remote-assistance, kaspersky, vpro-cira):
 *
 *   connectPorts: [443]
 *   inspection: { mode: all-except, hosts: [ras.flexxible.com, iagent.flexxible.com] }
 *   idleTimeoutSeconds: 5
 *
 * CONNECT to 13000 and 4433 is refused; the Agent API (must not be inspected) is intercepted; the
 * two excepted hosts are untouched; the CIRA tunnel on 443 fails tunnel-keepalive on a measured
 * ~5 s idle timer; every result is as the definition predicts and the CLI exits 0. The same
 * definition on the chain engine, on squid as a process and on squid in a container: the named
 * rows come out the same on all three (the engines differ, as predicted, on other rows).
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import type { CheckResult, RunReport } from '../harness/model.ts';
import { cli } from './helpers/cli.ts';
import { labNet } from './helpers/lab-net.ts';
import { containerEngineProblem, requireComponent, squidProblem } from './helpers/requirements.ts';

const PROFILES = 'flexxagent,remote-assistance,kaspersky,vpro-cira';
const CIRA_KEEPALIVE = 'vpro-cira/iagent.flexxible.com:443/tunnel-keepalive';

/** The acceptance rows (`<profile>/<endpoint>/<check>`) and the outcome each must have on every engine. */
const NAMED: Record<string, string> = {
  'kaspersky/ksc-server.proxycheck.test:13000/connect': 'fail',
  'kaspersky/ksc-gateway.proxycheck.test:13000/connect': 'fail',
  'vpro-cira/iagent.flexxible.com:4433#open-amt-mps/connect': 'fail',
  'flexxagent/west-eu.agent-api.analyzer.flexxible.com:443/tls-interception': 'fail',
  'remote-assistance/ras.flexxible.com:443/tls-interception': 'pass',
  'vpro-cira/iagent.flexxible.com:443/tls-interception': 'pass',
  [CIRA_KEEPALIVE]: 'fail',
};

function definition(engine: 'chain' | 'squid'): string {
  return [
    'id: customer-x',
    `engine: ${engine}`,
    'connectPorts: [443]',
    'inspection: { mode: all-except, hosts: [ras.flexxible.com, iagent.flexxible.com] }',
    'idleTimeoutSeconds: 5',
    '',
  ].join('\n');
}

const dir = mkdtempSync(join(tmpdir(), 'proxycheck-customer-x-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

/** Each run's report, by label, for the comparison at the end. */
const reports = new Map<string, RunReport>();

const rowOf = (r: CheckResult) => r.id.slice(r.id.indexOf('/') + 1);

/** One line per result not as predicted, with the prediction's reason. */
function notAsPredicted(report: RunReport): string[] {
  return report.results
    .filter((r) => !r.matched)
    .map(
      (r) =>
        `${r.id}: ${r.outcome}, expected ${r.expected} (${r.expectedReason ?? 'no prediction: the default'}): ${r.message}`,
    );
}

async function runCustomerX(
  t: Test,
  label: string,
  engine: 'chain' | 'squid',
  runtime: 'in-process' | 'process' | 'container',
): Promise<void> {
  const file = join(dir, `${label}.yaml`);
  writeFileSync(file, definition(engine));
  const json = join(dir, `${label}.json`);
  const args = ['run', '--proxies', file, '--profiles', PROFILES, '--lab-net', String(await labNet(t))];
  if (runtime !== 'in-process') args.push('--runtime', runtime);
  args.push('--json', json);
  const t0 = performance.now();
  // a first container run may build the squid image (minutes)
  const r = await cli(args, { timeoutMs: runtime === 'container' ? 600_000 : 180_000 });
  t.comment(
    `${label}: proxycheck ${args.join(' ')}: exit ${r.code} in ${Math.round((performance.now() - t0) / 100) / 10} s`,
  );
  const report = JSON.parse(readFileSync(json, 'utf8')) as RunReport;
  reports.set(label, report);

  const wrong = notAsPredicted(report);
  for (const line of wrong) t.comment(`not as predicted: ${line}`);
  for (const row of report.results.filter((x) => !x.matched)) t.comment(`JSON: ${JSON.stringify(row)}`);
  t.equal(report.summary.unmatched, 0, `${label}: every result as the definition predicts`, { wrong });
  t.equal(r.code, 0, `${label}: exit 0`, { stdout: r.stdout.slice(-3000), stderr: r.stderr.slice(-3000) });
  t.match(r.stdout, /OK: all \d+ results as expected/);
  t.notOk(report.staleDeviations, 'no stale deviation');
  t.equal(report.proxies[0]?.id, 'customer-x');
  t.equal(report.proxies[0]?.runtime, runtime, `ran ${runtime}`);

  const byRow = new Map(report.results.map((x) => [rowOf(x), x]));
  for (const [row, want] of Object.entries(NAMED)) {
    const res = byRow.get(row);
    t.equal(res?.outcome, want, `${label}: ${row} ${want} (${res?.message ?? 'missing'})`);
    t.equal(
      res?.expected,
      res?.outcome,
      `${label}: ${row} as predicted (${res?.expectedReason ?? 'the default'})`,
    );
  }
  const refused = byRow.get('kaspersky/ksc-server.proxycheck.test:13000/connect');
  t.match(refused?.message, /403 Forbidden/, 'refused with a 403');
  t.match(refused?.expectedReason, /port 13000 is not in connectPorts \(443\)/);
  const agentApi = byRow.get('flexxagent/west-eu.agent-api.analyzer.flexxible.com:443/tls-interception');
  t.match(agentApi?.message, /TLS intercepted/);
  t.match(agentApi?.expectedReason, /must not be inspected/);
  const keepalive = byRow.get(CIRA_KEEPALIVE);
  const timers = keepalive?.evidence.timers as { timer?: string; idleTimerSeconds?: number } | undefined;
  t.equal(timers?.timer, 'idle', 'the idle timer was measured');
  // chain closes after 5 s; squid after between 4 and 5 s (it counts whole seconds)
  const idle = timers?.idleTimerSeconds;
  t.ok(idle !== undefined && idle >= 3.9 && idle <= 5.6, `measured idle timer ${idle} s, about 5 s`);
  t.match(keepalive?.message, /idle timer: the proxy closed a silent tunnel after/);
}

t.test('customer-x on the chain engine, through the CLI', { timeout: 300_000 }, async (t) => {
  await runCustomerX(t, 'chain', 'chain', 'in-process');
});

t.test(
  'customer-x on squid as a process, through the CLI',
  { ...requireComponent(t, 'squid', squidProblem()), timeout: 300_000 },
  async (t) => {
    await runCustomerX(t, 'squid-process', 'squid', 'process');
  },
);

t.test(
  'customer-x on squid in a container, through the CLI',
  { ...requireComponent(t, 'a container engine', await containerEngineProblem()), timeout: 900_000 },
  async (t) => {
    await runCustomerX(t, 'squid-container', 'squid', 'container');
  },
);

t.test('the named rows come out the same on every engine and runtime', async (t) => {
  const labels = [...reports.keys()];
  if (!labels.includes('chain')) {
    t.fail(`the chain run gave no report (runs: ${labels.join(', ') || 'none'})`);
    return;
  }
  t.comment(`runs compared: ${labels.join(', ')}`);
  const outcomes = (label: string) => {
    const byRow = new Map((reports.get(label) as RunReport).results.map((x) => [rowOf(x), x.outcome]));
    return Object.fromEntries(Object.keys(NAMED).map((row) => [row, byRow.get(row)]));
  };
  for (const label of labels) t.same(outcomes(label), NAMED, `${label}: the named rows`);
  for (const label of labels.filter((l) => l !== 'chain'))
    t.same(outcomes(label), outcomes('chain'), `${label} and chain agree on the named rows`);
  // the rows where the engines differ (each as predicted); for the record
  const chain = new Map((reports.get('chain') as RunReport).results.map((x) => [rowOf(x), x.outcome]));
  for (const label of labels.filter((l) => l !== 'chain')) {
    const differ = (reports.get(label) as RunReport).results.filter((x) => chain.get(rowOf(x)) !== x.outcome);
    t.comment(`${label} differs from chain on ${differ.length} rows (each as predicted):`);
    for (const x of differ)
      t.comment(
        `  ${rowOf(x)}: chain ${chain.get(rowOf(x))}, ${label} ${x.outcome} (${x.expectedReason ?? 'default'})`,
      );
  }
});
