/**
 * Runs the matrix: every selected proxy × every selected profile's exchanges, judged by the
 * checks, each result compared with its expectation.
 */
import { createRequire } from 'node:module';
import { runExchange } from '../agent/exchange.ts';
import { CHECK_ORDER, checkDefinition, type Verdict } from '../checks/definitions.ts';
import { errorMessage, SetupError, UsageError } from '../errors.ts';
import { Lab, type LabHostSpec } from '../lab/lab.ts';
import { createLabPki } from '../lab/pki.ts';
import { RunDir } from '../lab/rundir.ts';
import { onCleanup, refuseIfStopping } from '../lifecycle.ts';
import { type CheckResult, type ProxyInfo, RESULT_SCHEMA_ID, type RunReport, summarize } from '../model.ts';
import { proxyById, type Runtime } from '../proxies/registry.ts';
import type { ProxyUnderTest, StartedProxy } from '../proxies/types.ts';
import {
  catalogRow,
  expectationFor,
  loadScenarios,
  type Profile,
  resolveHost,
  type ScenarioSet,
} from '../scenarios.ts';

const require = createRequire(import.meta.url);
export const VERSION: string = require('../../package.json').version;

export interface Timeouts {
  connectMs: number;
  answerMs: number;
  tlsMs: number;
  requestMs: number;
}

export const DEFAULT_TIMEOUTS: Timeouts = {
  connectMs: 5_000,
  answerMs: 15_000,
  tlsMs: 10_000,
  requestMs: 30_000,
};

export interface RunOptions {
  proxies: Array<string | ProxyUnderTest>;
  profiles: string[];
  /** For proxies that can run in a container or as a process (squid). */
  runtime?: Runtime;
  labNet?: number;
  tenant?: string;
  /** The enterprise deployed the corporate inspection CA to the agents' trust store. */
  trustCorporateCa?: boolean;
  /** More PEM CAs in the agents' trust store (a customer's own inspection CA, for `validate`). */
  extraTrust?: string[];
  timeouts?: Partial<Timeouts>;
  scenarios?: ScenarioSet;
  onResult?: (r: CheckResult) => void;
}

export function selectProfiles(set: ScenarioSet, ids: string[]): Profile[] {
  if (ids.length === 1 && ids[0] === 'all') return [...set.profiles.values()];
  return ids.map((id) => {
    const p = set.profiles.get(id);
    if (!p)
      throw new UsageError(`unknown profile "${id}" (known: ${[...set.profiles.keys()].join(', ')}, all)`);
    return p;
  });
}

/** The lab hosts (with their ports) that the selected profiles talk to. */
export function labHostsFor(set: ScenarioSet, profiles: Profile[]): LabHostSpec[] {
  const hosts = new Map<string, LabHostSpec>();
  for (const p of profiles) {
    for (const x of p.exchanges) {
      const row = catalogRow(set, x);
      const host = resolveHost(x.host, set.tenant);
      const spec = hosts.get(host) ?? { host, ports: [] };
      if (!spec.ports.some((q) => q.port === x.port)) {
        spec.ports.push({ port: x.port, transport: row.transport === 'http' ? 'http' : 'https' });
      }
      hosts.set(host, spec);
    }
  }
  return [...hosts.values()];
}

export async function runMatrix(opts: RunOptions): Promise<RunReport> {
  const startedAt = new Date().toISOString();
  const set = opts.scenarios ?? loadScenarios({ ...(opts.tenant ? { tenant: opts.tenant } : {}) });
  const profiles = selectProfiles(set, opts.profiles);
  const adapters = opts.proxies.map((p) =>
    typeof p === 'string' ? proxyById(p, { runtime: opts.runtime ?? 'auto' }) : p,
  );
  const timeouts = { ...DEFAULT_TIMEOUTS, ...opts.timeouts };
  const results: CheckResult[] = [];
  const proxies: ProxyInfo[] = [];

  const runDir = new RunDir();
  const unregisterDir = onCleanup('run directory', () => runDir.remove());
  let lab: Lab | undefined;
  let unregisterLab = () => {};
  try {
    const pki = await createLabPki(runDir.path);
    lab = await Lab.start({
      pki,
      hosts: labHostsFor(set, profiles),
      ...(opts.labNet ? { net: opts.labNet } : {}),
    });
    const startedLab = lab;
    unregisterLab = onCleanup('lab origins', () => startedLab.stop());

    for (const adapter of adapters) {
      let started: StartedProxy | undefined;
      let setupError: string | undefined;
      let setupEvidence: Record<string, unknown> = {};
      try {
        refuseIfStopping(`proxy ${adapter.id}`);
        started = await adapter.start({ lab, runDir, scenarios: set });
      } catch (err) {
        // Bad input (a proxy URL that does not reach the lab, say) stops the run with one line.
        if (err instanceof UsageError) throw err;
        setupError = errorMessage(err);
        if (err instanceof SetupError) setupEvidence = err.evidence;
      }
      const unregisterProxy = started ? onCleanup(`proxy ${adapter.id}`, () => started?.stop()) : () => {};
      proxies.push(
        started
          ? {
              id: started.id,
              kind: started.kind,
              runtime: started.runtime,
              version: started.version,
              url: started.url,
              startMs: started.startMs,
            }
          : { id: adapter.id, kind: 'unknown', runtime: 'unknown', version: 'unknown' },
      );
      try {
        for (const profile of profiles) {
          for (const x of profile.exchanges) {
            const host = resolveHost(x.host, set.tenant);
            const row = catalogRow(set, x);
            let verdicts: Map<string, Verdict>;
            if (!started) {
              verdicts = new Map(
                CHECK_ORDER.map((c) => [
                  c,
                  {
                    outcome: 'setup_fail',
                    message: `proxy ${adapter.id} did not start: ${setupError}`,
                    evidence: setupEvidence,
                    durationMs: 0,
                  },
                ]),
              );
            } else {
              try {
                const leaf = lab.pki.labRoot.issueLeaf([host]);
                verdicts = await runExchange({
                  proxy: {
                    host: started.host,
                    port: started.port,
                    ...(started.credentials ? { credentials: started.credentials } : {}),
                  },
                  host,
                  port: x.port,
                  row,
                  exchange: x,
                  trust: [
                    lab.pki.labRoot.cert.certPem,
                    ...(opts.trustCorporateCa ? [lab.pki.corporate.cert.certPem] : []),
                  ],
                  originIssuerCN: lab.pki.labRoot.commonName,
                  originPins: [leaf.spkiSha256],
                  timeouts,
                });
              } catch (err) {
                const message = `harness error: ${errorMessage(err)}`;
                verdicts = new Map(
                  CHECK_ORDER.map((c) => [
                    c,
                    {
                      outcome: 'harness_fail',
                      message,
                      evidence: { stack: (err as Error).stack ?? '' },
                      durationMs: 0,
                    },
                  ]),
                );
              }
            }
            for (const check of CHECK_ORDER) {
              const v = verdicts.get(check);
              if (!v) continue;
              const r = toResult(set, adapter.id, profile.id, `${host}:${x.port}`, check, v, {
                host,
                port: x.port,
                proxyId: adapter.id,
              });
              results.push(r);
              opts.onResult?.(r);
            }
          }
        }
      } finally {
        unregisterProxy();
        await started?.stop();
      }
    }
  } finally {
    unregisterLab();
    await lab?.stop();
    unregisterDir();
    runDir.remove();
  }
  return {
    schema: RESULT_SCHEMA_ID,
    startedAt,
    finishedAt: new Date().toISOString(),
    tool: { name: 'proxycheck', version: VERSION },
    proxies,
    results,
    summary: summarize(results),
  };
}

function toResult(
  set: ScenarioSet,
  proxy: string,
  profile: string,
  endpoint: string,
  check: string,
  v: Verdict,
  ctx: { host: string; port: number; proxyId: string },
): CheckResult {
  const def = checkDefinition(check);
  const exp = expectationFor(set, { proxy, profile, endpoint, check }, v.notApplicable ? 'skip' : 'pass');
  const needsRemedy = v.outcome === 'fail' || v.outcome === 'warn';
  return {
    id: `${proxy}/${profile}/${endpoint}/${check}`,
    proxy,
    profile,
    endpoint,
    check,
    outcome: v.outcome,
    expected: exp.expect,
    ...(exp.reason ? { expectedReason: exp.reason } : {}),
    matched: v.outcome === exp.expect,
    message: v.message,
    evidence: { explain: def.explain(ctx), ...v.evidence },
    remediation: needsRemedy ? (v.remediation ?? def.remediation(ctx, v)) : '',
    durationMs: v.durationMs,
  };
}
