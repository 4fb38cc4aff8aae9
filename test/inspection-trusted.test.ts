/**
 * What survives an inspected session the agent accepts (it trusts the inspection CA), on both
 * engines, as the oracle's engine traits say (docs/proxies.md): squid treats everything inside a
 * bumped session as HTTP (a binary TLS stream gets 400, MQTT no CONNACK, an HTTPS head is
 * re-written); CIRA never gets its APF answer on either engine. Untrusted, squid cannot confirm a
 * raw TLS stream's tunnel (warn). Every result as predicted.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import type { RunReport } from '../harness/model.ts';
import { runMatrix } from '../harness/runner/run.ts';
import { loadScenarios } from '../harness/scenarios.ts';
import { labNet } from './helpers/lab-net.ts';
import { requireComponent, squidProblem } from './helpers/requirements.ts';

async function run(t: Test, id: string, yaml: string, trust: boolean): Promise<RunReport> {
  const dir = mkdtempSync(join(tmpdir(), 'proxycheck-trusted-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, `${id}.yaml`);
  writeFileSync(file, `id: ${id}\n${yaml}`);
  const report = await runMatrix({
    scenarios: loadScenarios(),
    proxies: [file],
    profiles: ['kaspersky', 'eset', 'vpro-cira'],
    labNet: await labNet(t),
    runtime: 'process',
    ...(trust ? { trustCorporateCa: true } : {}),
  });
  const off = report.results.filter((r) => !r.matched);
  t.same(
    off.map((r) => `${r.id}: ${r.outcome}, expected ${r.expected}: ${r.message}`),
    [],
    `${id}: every result as predicted`,
  );
  return report;
}

function outcome(report: RunReport, id: string): string | undefined {
  return report.results.find((r) => r.id === id)?.outcome;
}

t.test('chain inspecting everything, agents trusting its CA', async (t) => {
  const r = await run(t, 'ch-trusted', 'engine: chain\ninspection: { mode: all }\n', true);
  t.equal(
    outcome(r, 'ch-trusted/kaspersky/ksc-server.proxycheck.test:13000/payload'),
    'pass',
    'a TLS stream survives',
  );
  t.equal(
    outcome(r, 'ch-trusted/kaspersky/ksc-server.proxycheck.test:443/headers'),
    'pass',
    'an HTTPS head survives',
  );
  t.equal(outcome(r, 'ch-trusted/eset/eset-push.proxycheck.test:8883/payload'), 'pass', 'MQTT survives');
  t.equal(outcome(r, 'ch-trusted/vpro-cira/iagent.flexxible.com:443/connect'), 'pass');
  t.equal(
    outcome(r, 'ch-trusted/vpro-cira/iagent.flexxible.com:443/protocol'),
    'fail',
    'CIRA gets no APF answer',
  );
});

t.test('squid bumping everything', requireComponent(t, 'squid', squidProblem()), async (t) => {
  const yaml = 'engine: squid\nconnectPorts: any\ninspection: { mode: all }\n';
  const trusted = await run(t, 'sq-trusted', yaml, true);
  const at = (id: string) => outcome(trusted, `sq-trusted/${id}`);
  t.equal(at('kaspersky/ksc-server.proxycheck.test:13000/payload'), 'fail', 'a TLS stream gets 400 inside');
  t.equal(at('kaspersky/ksc-server.proxycheck.test:443/headers'), 'fail', 'an HTTPS head is re-written');
  t.equal(at('eset/eset-push.proxycheck.test:443/protocol'), 'fail', 'MQTT gets no CONNACK, on 443 too');
  t.equal(at('eset/eset-push.proxycheck.test:443/failover'), 'fail');
  t.equal(at('vpro-cira/iagent.flexxible.com:443/protocol'), 'fail', 'CIRA gets no APF answer');
  const untrusted = await run(t, 'sq-untrusted', yaml, false);
  t.equal(
    outcome(untrusted, 'sq-untrusted/kaspersky/ksc-server.proxycheck.test:13000/connect'),
    'warn',
    'untrusted: squid answers the probe itself, the tunnel cannot be confirmed',
  );
});
