/**
 * The one runner: every selected proxy × every selected profile's exchanges, replayed against the
 * origins (the lab, or live hosts), judged by the checks, each result compared with its
 * expectation. It knows no kind, check or route by name: kinds replay, route policies wrap them,
 * the dependency rule and toResult do the rest.
 */
import { kindOf } from '../agent/kinds/index.ts';
import type { KindContext, KindVerdict, Timeouts } from '../agent/kinds/types.ts';
import { errorMessage, SetupError, UsageError } from '../errors.ts';
import type { LabHostSpec, LabPortSpec } from '../lab/lab.ts';
import { RunDir } from '../lab/rundir.ts';
import { onCleanup, refuseIfStopping } from '../lifecycle.ts';
import { type CheckResult, type ProxyInfo, parseEndpoint, type RunReport } from '../model.ts';
import { DeviationWatch } from '../proxies/expectations.ts';
import type { AutoDetectAnswer } from '../proxies/oracle.ts';
import { proxyById, proxyIds } from '../proxies/registry.ts';
import type { Runtime } from '../proxies/toolkit/runtime.ts';
import type { ProxyUnderTest, StartedProxy } from '../proxies/types.ts';
import { proxyAuthFor } from '../route/auth.ts';
import { type ClientNetwork, scriptUrlFor } from '../route/client-network.ts';
import { exchangeChecks, runWithPolicies } from '../route/policies.ts';
import { proxyRoute, type Route } from '../route/route.ts';
import { measureTimers, type TimerMeasurement } from '../route/timers.ts';
import {
  catalogRow,
  checkExpectationProxies,
  type LoadedDefinition,
  loadScenarios,
  type Profile,
  type ProfileExchange,
  resolveHost,
  type ScenarioSet,
} from '../scenarios.ts';
import { applyDependencies } from './dependencies.ts';
import { labOrigins, type OriginsStrategy, type StartedOrigins } from './origins.ts';
import { assembleReport, endpointOf, mergeInstances, toResult } from './result.ts';
import { type Shard, shardFilter } from './shard.ts';

export { VERSION } from '../util/pkg.ts';
export { endpointOf, mergeInstances } from './result.ts';
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
  profiles: string[] | Profile[];
  /** For proxies that can run in a container or as a process (squid). */
  runtime?: Runtime;
  /** Where the exchanges end (default: the lab, configured by labNet/trustCorporateCa/extraTrust). */
  origins?: OriginsStrategy;
  labNet?: number;
  tenant?: string;
  /** The enterprise deployed the corporate inspection CA to the agents' trust store. */
  trustCorporateCa?: boolean;
  /** More PEM CAs in the agents' trust store (a customer's own inspection CA, for `validate`). */
  extraTrust?: string[];
  timeouts?: Partial<Timeouts>;
  /** Multiplies every duration in the profiles (1 = real time; default DEFAULT_TIME_SCALE). */
  timeScale?: number;
  /**
   * Real seconds to wait when measuring the proxy's tunnel timers (`--timer-wait`; default: as long
   * as the replayed session lasts here, at least 10 s). Never compressed by the time scale.
   */
  timerWait?: number;
  /** The option a user gives to wait longer, named in `tunnel-keepalive` skips (default --timer-wait). */
  timerWaitOption?: string;
  scenarios?: ScenarioSet;
  /** The host an exchange talks to (default: its catalog host with the run's values filled in). */
  hostOf?: (x: ProfileExchange) => string;
  /** Exchanges of one profile in flight at once (default: all, as an agent runs them). */
  concurrency?: number;
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
      const host = resolveHost(x.host, set);
      const spec = hosts.get(host) ?? { host, ports: [] };
      // the failover port serves what the primary serves
      const ports = [x.port, ...(x.failover && x.failover.port !== x.port ? [x.failover.port] : [])];
      for (const port of ports) {
        for (const want of kindOf(x).lab({ ...x, port }, catalogRow(set, { ...x, port }))) {
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
      }
      hosts.set(host, spec);
    }
  }
  return [...hosts.values()];
}

function describePort(p: LabPortSpec): string {
  return `${p.transport}${p.service ? `/${p.service}` : ''}${p.mtls ? '+mtls' : ''}`;
}

const failAll = (checks: string[], v: KindVerdict) => new Map(checks.map((c) => [c, v]));

/** One exchange's verdicts, before they become results. */
interface Computed {
  x: ProfileExchange;
  row: ReturnType<typeof catalogRow>;
  kind: ReturnType<typeof kindOf>;
  checks: string[];
  endpoint: string;
  verdicts: Map<string, KindVerdict>;
}

/** Whether the agent finds the proxy there and answering as a proxy should. */
function isUp(p: StartedProxy): boolean {
  return (p.availability ?? 'up') === 'up' || p.availability === 'dies';
}

async function pool<T, R>(items: T[], n: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    for (let i = next++; i < items.length; i = next++) out[i] = await fn(items[i] as T);
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(n, items.length)) }, worker));
  return out;
}

export async function runMatrix(opts: RunOptions): Promise<RunReport> {
  const startedAt = new Date().toISOString();
  const set = opts.scenarios ?? loadScenarios({ ...(opts.tenant ? { tenant: opts.tenant } : {}) });
  const profiles: Profile[] = opts.profiles.every((p) => typeof p === 'string')
    ? selectProfiles(set, opts.profiles as string[])
    : (opts.profiles as Profile[]);
  const adapters = opts.proxies.map((p) =>
    typeof p === 'string' ? proxyById(p, { runtime: opts.runtime ?? 'auto', scenarios: set }) : p,
  );
  checkExpectationProxies(set, [...new Set([...proxyIds(set), ...adapters.map((a) => a.id), 'external'])]);
  const inShard = shardFilter(
    adapters.map((a) => a.id),
    profiles.map((p) => p.id),
    opts.shard,
  );
  const timeouts = { ...DEFAULT_TIMEOUTS, ...opts.timeouts };
  const timeScale = opts.timeScale ?? DEFAULT_TIME_SCALE;
  if (!(timeScale > 0) || !Number.isFinite(timeScale))
    throw new UsageError(`time scale must be a positive number, not ${timeScale}`);
  const hostOf = opts.hostOf ?? ((x: ProfileExchange) => resolveHost(x.host, set));
  const strategy =
    opts.origins ??
    labOrigins({
      ...(opts.labNet ? { net: opts.labNet } : {}),
      ...(opts.trustCorporateCa ? { trustCorporateCa: true } : {}),
      ...(opts.extraTrust ? { extraTrust: opts.extraTrust } : {}),
    });
  const results: CheckResult[] = [];
  const proxies: ProxyInfo[] = [];
  const watch = new DeviationWatch();
  /** What each proxy's auto detect answers per host:port, run once before its work items. */
  const autoDetected = new Map<string, AutoDetectAnswer>();
  const expecting = {
    env: {
      timeScale,
      ...(opts.trustCorporateCa ? { trustInspectionCa: true } : {}),
      ...(opts.timerWait !== undefined ? { timerWait: opts.timerWait } : {}),
      autoDetect: (proxyId: string, host: string, port: number) =>
        autoDetected.get(`${proxyId}|${host}:${port}`),
    },
    watch,
  };
  /** The oracle's view of a fail-open exchange's auto detect: the script's answer, and the proxies it names. */
  const predictAutoDetect = async (
    proxyId: string,
    started: StartedProxy,
    x: ProfileExchange,
    host: string,
    client: ClientNetwork,
  ) => {
    const url = scriptUrlFor(host, x.port, kindOf(x).forwarded === true);
    const proxies = new Map<string, LoadedDefinition>();
    for (const p of started.scriptProxies ?? []) {
      const d = set.proxies.get(p.id);
      if (d) proxies.set(p.at, d);
    }
    autoDetected.set(`${proxyId}|${host}:${x.port}`, {
      discovery: await client.discover(url, host),
      proxies,
    });
  };
  const contextFor = (
    x: ProfileExchange,
    route: Route,
    o: StartedOrigins,
    client?: ClientNetwork,
  ): KindContext => {
    const host = hostOf(x);
    // the agent's own connect deadline, when its profile states one: real time, never compressed
    const deadline = x.proxyUnreachable?.connectDeadlineSeconds;
    return {
      route,
      host,
      port: x.port,
      row: catalogRow(set, x),
      rowFor: (port: number) => catalogRow(set, { ...x, port }),
      exchange: x,
      trust: o.trust(host),
      ...(o.reachMarker ? { reachMarker: o.reachMarker } : {}),
      // only mutual-TLS exchanges (CIRA) ask for it
      get clientCert() {
        return o.clientCert(host);
      },
      timeouts: deadline !== undefined ? { ...timeouts, connectMs: deadline * 1000 } : timeouts,
      timeScale,
      directAddress: (h: string) => o.directAddress(h),
      ...(client ? { client } : {}),
    };
  };

  const runDir = new RunDir();
  const unregisterDir = onCleanup('run directory', () => runDir.remove());
  let origins: StartedOrigins | undefined;
  let unregisterOrigins = () => {};
  try {
    origins = await strategy.start({ runDir, hosts: () => labHostsFor(set, profiles) });
    const started0 = origins;
    unregisterOrigins = onCleanup('origins', () => started0.stop());

    for (const adapter of adapters) {
      const itsProfiles = profiles.filter((p) => inShard(adapter.id, p.id));
      if (!itsProfiles.length) continue;
      let started: StartedProxy | undefined;
      let setupError: string | undefined;
      let setupEvidence: Record<string, unknown> = {};
      try {
        refuseIfStopping(`proxy ${adapter.id}`);
        started = await adapter.start({
          ...(origins.lab ? { lab: origins.lab } : {}),
          runDir,
          scenarios: set,
        });
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
      // every exchange's context, made once; the proxy's timers are measured from now on, in real
      // time, beside the work items (harness/route/timers.ts)
      const contexts = new Map<ProfileExchange, KindContext>();
      const byProfile = new Map<Profile, Computed[]>();
      const measurements = new Map<ProfileExchange, TimerMeasurement | undefined>();
      if (started) {
        const client = started.client;
        const route = proxyRoute({
          host: started.host,
          port: started.port,
          ...(started.credentials ? { auth: proxyAuthFor(started.credentials) } : {}),
          ...(client ? { resolve: client.resolve } : {}),
        });
        for (const x of itsProfiles.flatMap((p) => p.exchanges)) {
          const ctx = contextFor(x, route, origins, client);
          contexts.set(x, ctx);
          if (client && client.autoDetect !== 'none' && x.proxyUnreachable?.fallback === 'auto-detect')
            await predictAutoDetect(adapter.id, started, x, hostOf(x), client);
          // a proxy that is not there has no timers to measure
          if (!isUp(started)) continue;
          measurements.set(
            x,
            measureTimers(kindOf(x), ctx, {
              ...(opts.timerWait !== undefined ? { waitSeconds: opts.timerWait } : {}),
              waitOption: opts.timerWaitOption ?? '--timer-wait',
            }),
          );
        }
      }
      // A proxy that is not there carries no load: its profiles run at once, each agent waiting
      // out its own connect deadline (a blackhole), instead of one deadline after another.
      const itemsAtOnce = started && !isUp(started) ? itsProfiles.length : 1;
      /** A work item's results, reported in exchange and check order; then the item is done. */
      const emit = (profile: Profile) => {
        for (const { x, row, kind, checks, endpoint, verdicts } of byProfile.get(profile) ?? []) {
          for (const check of checks) {
            const v = verdicts.get(check) as KindVerdict;
            const at = v.endpoint ?? endpoint;
            const { host: h, port: p } = parseEndpoint(at);
            const r = toResult(
              set,
              {
                proxy: adapter.id,
                profile: profile.id,
                endpoint: at,
                check,
                kind: kind.id,
                row: p === x.port ? row : catalogRow(set, { ...x, port: p }),
                ctx: {
                  host: h,
                  port: p,
                  proxyId: adapter.id,
                  ...(kind.forwarded ? { forwarded: true } : {}),
                },
                exchange: x,
              },
              v,
              expecting,
            );
            results.push(r);
            opts.onResult?.(r);
          }
        }
        opts.onWorkItem?.('done', adapter.id, profile.id);
      };
      try {
        await pool(itsProfiles, itemsAtOnce, async (profile) => {
          opts.onWorkItem?.('start', adapter.id, profile.id);
          // The exchanges of a profile run at once, as an agent runs them; results keep profile order.
          const computed = await pool(profile.exchanges, opts.concurrency ?? Infinity, async (x) => {
            const host = hostOf(x);
            const row = catalogRow(set, x);
            const kind = kindOf(x);
            const checks = exchangeChecks(kind, x, contexts.get(x)?.route);
            const endpoint = endpointOf(host, x.port, x.name);
            let verdicts: Map<string, KindVerdict>;
            if (!started) {
              verdicts = failAll(checks, {
                outcome: 'setup_fail',
                message: `proxy ${adapter.id} did not start: ${setupError}`,
                evidence: setupEvidence,
                durationMs: 0,
              });
            } else {
              try {
                const ctx = contexts.get(x) as KindContext;
                const n = x.instances ?? 1;
                const merged = mergeInstances(
                  await Promise.all(Array.from({ length: n }, () => runWithPolicies(kind, ctx))),
                );
                await measurements.get(x)?.judge(merged);
                verdicts = applyDependencies(kind.id, checks, merged);
              } catch (err) {
                verdicts = failAll(checks, {
                  outcome: 'harness_fail',
                  message: `harness error: ${errorMessage(err)}`,
                  evidence: { stack: (err as Error).stack ?? '' },
                  durationMs: 0,
                });
              }
            }
            return { x, row, kind, checks, endpoint, verdicts };
          });
          byProfile.set(profile, computed);
          if (itemsAtOnce === 1) emit(profile);
        });
        // results in profile order, whatever order the work items ended in
        if (itemsAtOnce > 1) for (const profile of itsProfiles) emit(profile);
      } finally {
        unregisterProxy();
        await started?.stop();
      }
    }
  } finally {
    unregisterOrigins();
    await origins?.stop();
    unregisterDir();
    runDir.remove();
  }
  const report = assembleReport(startedAt, proxies, results);
  const stale = watch.stale();
  return stale.length ? { ...report, staleDeviations: stale } : report;
}
