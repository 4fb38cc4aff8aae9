import { fileURLToPath } from 'node:url';
import type { Test } from 'tap';
import { Lab, type LabHostSpec } from '../../harness/lab/lab.ts';
import { createLabPki, type LabPki } from '../../harness/lab/pki.ts';
import { RunDir } from '../../harness/lab/rundir.ts';
import type { ProxyUnderTest, StartedProxy } from '../../harness/proxies/types.ts';
import { loadScenarios, type ScenarioSet } from '../../harness/scenarios.ts';

export const FIXTURE_SCENARIOS = fileURLToPath(new URL('../../fixtures/scenarios/', import.meta.url));

export function fixtureScenarios(): ScenarioSet {
  return loadScenarios({ dir: FIXTURE_SCENARIOS });
}

/** A run directory and lab PKI, removed when the test ends. */
export async function testPki(t: Test): Promise<{ runDir: RunDir; pki: LabPki }> {
  const runDir = new RunDir('proxycheck-test-');
  t.teardown(() => runDir.remove());
  return { runDir, pki: await createLabPki(runDir.path) };
}

/** A lab on its own loopback net, stopped when the test ends. */
/** The hosts of the fixtures/live catalog, served by a test lab for the `validate --origins live` tests. */
export const LIVE_LAB_HOSTS: LabHostSpec[] = [
  { host: 'open.live.test', ports: [{ port: 443, transport: 'https' }] },
  { host: 'nobump.live.test', ports: [{ port: 443, transport: 'https' }] },
  { host: 'pinned.live.test', ports: [{ port: 443, transport: 'https' }] },
  { host: 'agent-acme.live.test', ports: [{ port: 443, transport: 'https' }] },
  { host: 'api.eu.live.test', ports: [{ port: 443, transport: 'https' }] },
  { host: 'stream.live.test', ports: [{ port: 13000, transport: 'tls' }] },
  { host: 'broker.live.test', ports: [{ port: 8883, transport: 'tls' }] },
  { host: 'replication.live.test', ports: [{ port: 2222, transport: 'tcp' }] },
  { host: 'repo.live.test', ports: [{ port: 80, transport: 'http' }] },
];

export async function testLab(
  t: Test,
  net: number,
  hosts: LabHostSpec[],
): Promise<{ lab: Lab; runDir: RunDir; pki: LabPki }> {
  const { runDir, pki } = await testPki(t);
  const lab = await Lab.start({ pki, hosts, net });
  t.teardown(() => lab.stop());
  return { lab, runDir, pki };
}

export async function startProxy(
  t: Test,
  proxy: ProxyUnderTest,
  lab: Lab,
  runDir: RunDir,
): Promise<StartedProxy> {
  const started = await proxy.start({ lab, runDir });
  t.teardown(() => started.stop());
  return started;
}

export const https443 = (host: string): LabHostSpec => ({ host, ports: [{ port: 443, transport: 'https' }] });
