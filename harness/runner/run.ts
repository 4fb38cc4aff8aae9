/**
 * Runs the matrix: every selected proxy × every selected profile's exchanges, judged by the
 * checks, each result compared with its expectation.
 */
import { createRequire } from 'node:module';
import { kindOf } from '../agent/kinds/index.ts';
import type { KindVerdict, Timeouts } from '../agent/kinds/types.ts';
import { type CheckContext, checkDefinition, type Verdict } from '../checks/definitions.ts';
import { errorMessage, SetupError, UsageError } from '../errors.ts';
import { Lab, type LabHostSpec, type LabPortSpec } from '../lab/lab.ts';
import { createLabPki } from '../lab/pki.ts';
import { RunDir } from '../lab/rundir.ts';
import { onCleanup, refuseIfStopping } from '../lifecycle.ts';
import {
  type CheckResult,
  type ProxyInfo,
  parseEndpoint,
  RESULT_SCHEMA_ID,
  type RunReport,
  summarize,
} from '../model.ts';
import { proxyById } from '../proxies/registry.ts';
import type { Runtime } from '../proxies/toolkit/runtime.ts';
import type { ProxyUnderTest, StartedProxy } from '../proxies/types.ts';
import {
  type CatalogEndpoint,
  catalogRow,
  expectationFor,
  loadScenarios,
  type Profile,
  resolveHost,
  type ScenarioSet,
} from '../scenarios.ts';
import { type Shard, shardFilter } from './shard.ts';

const require = createRequire(import.meta.url);
export const VERSION: string = require('../../package.json').version;

export type { Timeouts };

/** Default --time-scale: profile durations (15 s samples, 30 s keep-alives, ...) run 100× faster. */
export const DEFAULT_TIME_SCALE = 0.01;

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
  /** Multiplies every duration in the profiles (1 = real time; default DEFAULT_TIME_SCALE). */
  timeScale?: number;
  /** Long-lived tunnels must survive this many real seconds (validate --idle-seconds). */
  idleSeconds?: number;
  scenarios?: ScenarioSet;
  onResult?: (r: CheckResult) => void;
  /** Run only this shard's (proxy, profile) work items; proxies with none are not started. */
  shard?: Shard;
  /** A (proxy, profile) work item starts (its proxy is up) or is done (all its results reported). */
  onWorkItem?: (phase: 'start' | 'done', proxy: string, profile: string) => void;
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

/** The lab hosts (with their ports and what each serves) that the selected profiles talk to. */
export function labHostsFor(set: ScenarioSet, profiles: Profile[]): LabHostSpec[] {
  const hosts = new Map<string, LabHostSpec>();
  for (const p of profiles) {
    for (const x of p.exchanges) {
      const row = catalogRow(set, x);
      const host = resolveHost(x.host, set);
      const spec = hosts.get(host) ?? { host, ports: [] };
      for (const want of kindOf(x).lab(x, row)) {
        const have = spec.ports.find((q) => q.port === want.port);
        if (!have) spec.ports.push(want);
        else if (
          have.transport !== want.transport ||
          have.service !== want.service ||
          !!have.mtls !== !!want.mtls
        ) {
          throw new UsageError(
            `profile ${p.id}: ${host}:${want.port} is served as ${describePort(have)} for another exchange and cannot also be ${describePort(want)}`,
          );
        }
      }
      hosts.set(host, spec);
    }
  }
  return [...hosts.values()];
}

function describePort(p: LabPortSpec): string {
  return `${p.transport}${p.service ? `/${p.service}` : ''}${p.mtls ? '+mtls' : ''}`;
}

/** The endpoint key of an exchange in results: `host:port`, or `host:port#name` for named variants. */
export function endpointOf(host: string, port: number, name?: string): string {
  return `${host}:${port}${name ? `#${name}` : ''}`;
}

const SEVERITY: Record<string, number> = {
  pass: 0,
  skip: 1,
  warn: 2,
  dependency_fail: 3,
  fail: 4,
  setup_fail: 5,
  harness_fail: 6,
};

/**
 * `instances` copies of one exchange ran at once (one Analyzer per user session): per check, the
 * worst verdict stands, with how many instances agreed.
 */
export function mergeInstances(runs: Array<Map<string, KindVerdict>>): Map<string, KindVerdict> {
  if (runs.length === 1) return runs[0] ?? new Map();
  const out = new Map<string, KindVerdict>();
  const checks = new Set(runs.flatMap((r) => [...r.keys()]));
  for (const c of checks) {
    const vs = runs.map((r) => r.get(c)).filter((v): v is KindVerdict => !!v);
    const worst = vs.reduce((a, b) => ((SEVERITY[b.outcome] ?? 0) > (SEVERITY[a.outcome] ?? 0) ? b : a));
    const same = vs.filter((v) => v.outcome === worst.outcome).length;
    out.set(c, {
      ...worst,
      message: `${same} of ${runs.length} instances: ${worst.message}`,
      evidence: { ...worst.evidence, instances: vs.map((v) => ({ outcome: v.outcome, message: v.message })) },
      durationMs: Math.max(...vs.map((v) => v.durationMs)),
    });
  }
  return out;
}

export async function runMatrix(opts: RunOptions): Promise<RunReport> {
  const startedAt = new Date().toISOString();
  const set = opts.scenarios ?? loadScenarios({ ...(opts.tenant ? { tenant: opts.tenant } : {}) });
  const profiles = selectProfiles(set, opts.profiles);
  const adapters = opts.proxies.map((p) =>
    typeof p === 'string' ? proxyById(p, { runtime: opts.runtime ?? 'auto' }) : p,
  );
  const inShard = shardFilter(
    adapters.map((a) => a.id),
    profiles.map((p) => p.id),
    opts.shard,
  );
  const timeouts = { ...DEFAULT_TIMEOUTS, ...opts.timeouts };
  const timeScale = opts.timeScale ?? DEFAULT_TIME_SCALE;
  if (!(timeScale > 0) || !Number.isFinite(timeScale))
    throw new UsageError(`time scale must be a positive number, not ${timeScale}`);
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
      const itsProfiles = profiles.filter((p) => inShard(adapter.id, p.id));
      if (!itsProfiles.length) continue;
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
        for (const profile of itsProfiles) {
          opts.onWorkItem?.('start', adapter.id, profile.id);
          // The exchanges of a profile run at once, as an agent runs them; results keep profile order.
          const computed = await Promise.all(
            profile.exchanges.map(async (x) => {
              const host = resolveHost(x.host, set);
              const row = catalogRow(set, x);
              const kind = kindOf(x);
              const checks = kind.checks(x);
              const endpoint = endpointOf(host, x.port, x.name);
              let verdicts: Map<string, KindVerdict>;
              if (!started) {
                verdicts = new Map(
                  checks.map((c) => [
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
                  const leaf = startedLab.pki.labRoot.issueLeaf([host]);
                  const ctx = {
                    proxy: {
                      host: started.host,
                      port: started.port,
                      ...(started.credentials ? { credentials: started.credentials } : {}),
                    },
                    host,
                    port: x.port,
                    row,
                    rowFor: (port: number) => catalogRow(set, { ...x, port }),
                    exchange: x,
                    trust: [
                      startedLab.pki.labRoot.cert.certPem,
                      ...(opts.trustCorporateCa ? [startedLab.pki.corporate.cert.certPem] : []),
                      ...(opts.extraTrust ?? []),
                    ],
                    originIssuerCN: startedLab.pki.labRoot.commonName,
                    originPins: [leaf.spkiSha256],
                    // only mutual-TLS kinds (CIRA) present it: issued on first use (the CA caches it)
                    get clientCert() {
                      const device = startedLab.pki.deviceCa.issueLeaf([`device.${host}`], {
                        clientAuth: true,
                      });
                      return { certPem: device.certPem, keyPem: device.keyPem, subjectCN: `device.${host}` };
                    },
                    timeouts,
                    timeScale,
                    ...(opts.idleSeconds !== undefined ? { idleSeconds: opts.idleSeconds } : {}),
                    directAddress: (h: string) => startedLab.addressOf(h),
                  };
                  const n = x.instances ?? 1;
                  verdicts = mergeInstances(
                    await Promise.all(Array.from({ length: n }, () => kind.run(ctx))),
                  );
                } catch (err) {
                  const message = `harness error: ${errorMessage(err)}`;
                  verdicts = new Map(
                    checks.map((c) => [
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
              return { x, row, kind, checks, endpoint, verdicts };
            }),
          );
          for (const { x, row, kind, checks, endpoint, verdicts } of computed) {
            for (const check of checks) {
              const v = verdicts.get(check) ?? {
                outcome: 'harness_fail' as const,
                message: `harness error: the ${kind.id} exchange reported no verdict for ${check}`,
                evidence: {},
                durationMs: 0,
              };
              const at = v.endpoint ?? endpoint;
              const { host: h, port: p } = parseEndpoint(at);
              const r = toResult(
                set,
                adapter.id,
                profile.id,
                at,
                check,
                v,
                {
                  host: h,
                  port: p,
                  proxyId: adapter.id,
                  ...(kind.id === 'http-forward' ? { forwarded: true } : {}),
                },
                {
                  kind: kind.id,
                  row: p === x.port ? row : catalogRow(set, { ...x, port: p }),
                },
              );
              results.push(r);
              opts.onResult?.(r);
            }
          }
          opts.onWorkItem?.('done', adapter.id, profile.id);
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
  ctx: CheckContext,
  attrs: { kind: string; row: CatalogEndpoint },
): CheckResult {
  const def = checkDefinition(check);
  const exp = expectationFor(
    set,
    {
      proxy,
      profile,
      endpoint,
      check,
      port: ctx.port,
      kind: attrs.kind,
      mustNotInspect: attrs.row.mustNotInspect,
      pinned: attrs.row.pinned,
    },
    v.notApplicable ? 'skip' : 'pass',
  );
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
