/**
 * The one runner: every selected proxy × every selected profile's exchanges, replayed against the
 * origins (the lab, or live hosts), judged by the checks, each result compared with its
 * expectation. It knows no kind, check or route by name: kinds replay, route policies wrap them,
 * the dependency rule and toResult do the rest.
 */
import { kindOf } from '../agent/kinds/index.ts';
import type { KindContext, KindVerdict, Timeouts } from '../agent/kinds/types.ts';
import { errorMessage, SetupError, UsageError } from '../errors.ts';
import { RunDir } from '../lab/rundir.ts';
import { onCleanup, refuseIfStopping } from '../lifecycle.ts';
import { type CheckResult, type ProxyInfo, parseEndpoint, type RunReport } from '../model.ts';
import { DeviationWatch } from '../proxies/expectations.ts';
import type { AutoDetectAnswer } from '../proxies/oracle.ts';
import { proxyById, proxyIds } from '../proxies/registry.ts';
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
} from '../scenarios.ts';
import { applyDependencies } from './dependencies.ts';
import { labHostsFor, selectProfiles } from './lab-hosts.ts';
import { labOrigins, type StartedOrigins } from './origins.ts';
import { pool, type Semaphore, semaphore } from './pool.ts';
import { assembleReport, endpointOf, mergeInstances, toResult } from './result.ts';
import { shardFilter } from './shard.ts';

export { VERSION } from '../util/pkg.ts';
export { labHostsFor, selectProfiles } from './lab-hosts.ts';
export { endpointOf, mergeInstances } from './result.ts';
export type { Timeouts };

import { DEFAULT_JOBS, DEFAULT_TIME_SCALE, DEFAULT_TIMEOUTS, type RunOptions } from './options.ts';

export { DEFAULT_JOBS, DEFAULT_TIME_SCALE, DEFAULT_TIMEOUTS, type RunOptions };

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

interface ProxyStart {
  started?: StartedProxy;
  setupError?: string;
  setupEvidence?: Record<string, unknown>;
  /** Bad input: the run stops with this one line. */
  usage?: UsageError;
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

    // the proxies start side by side; bad input (a proxy URL that does not reach the lab, say)
    // stops the run with one line before any work item runs
    const withItems = adapters.filter((a) => profiles.some((p) => inShard(a.id, p.id)));
    const starts = await Promise.all(withItems.map((a) => startOne(a, started0)));
    const bad = starts.find((s) => s.usage);
    if (bad) {
      await Promise.all(starts.map((s) => s.started?.stop().catch(() => {})));
      throw bad.usage;
    }
    /** Work items of proxies that are up, in flight at once across all proxies. */
    const slots = semaphore(opts.jobs ?? DEFAULT_JOBS);
    // every proxy runs to its end (and stops) before a failure of one is thrown
    const perProxy = await Promise.allSettled(
      withItems.map(async (adapter, i) => {
        const mine: CheckResult[] = [];
        const info = await runProxy(adapter, starts[i] as ProxyStart, started0, slots, mine);
        return { info, mine };
      }),
    );
    for (const p of perProxy) if (p.status === 'rejected') throw p.reason;
    // results in proxy order, whatever order the proxies ended in
    for (const p of perProxy) {
      if (p.status !== 'fulfilled') continue;
      if (p.value.info) proxies.push(p.value.info);
      results.push(...p.value.mine);
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

  /** Starts one proxy; a start that fails is recorded (its items become setup_fail), bad input kept apart. */
  async function startOne(adapter: ProxyUnderTest, origins: StartedOrigins): Promise<ProxyStart> {
    try {
      refuseIfStopping(`proxy ${adapter.id}`);
      const started = await adapter.start({
        ...(origins.lab ? { lab: origins.lab } : {}),
        runDir,
        scenarios: set,
      });
      return { started };
    } catch (err) {
      if (err instanceof UsageError) return { usage: err };
      return {
        setupError: errorMessage(err),
        ...(err instanceof SetupError ? { setupEvidence: err.evidence } : {}),
      };
    }
  }

  /** One started proxy: its work items run (at most `slots` at once across proxies), then it stops. */
  async function runProxy(
    adapter: ProxyUnderTest,
    start: ProxyStart,
    origins: StartedOrigins,
    slots: Semaphore,
    results: CheckResult[],
  ): Promise<ProxyInfo> {
    const itsProfiles = profiles.filter((p) => inShard(adapter.id, p.id));
    const { started, setupError } = start;
    const setupEvidence = start.setupEvidence ?? {};
    const unregisterProxy = started ? onCleanup(`proxy ${adapter.id}`, () => started?.stop()) : () => {};
    const info: ProxyInfo = started
      ? {
          id: started.id,
          kind: started.kind,
          runtime: started.runtime,
          version: started.version,
          url: started.url,
          startMs: started.startMs,
        }
      : { id: adapter.id, kind: 'unknown', runtime: 'unknown', version: 'unknown' };
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
        ...(started.tls ? { tls: started.tls } : {}),
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
    // Items of a proxy that is up share the run's slots; those of one that is not there take none.
    const itemsAtOnce = started && !isUp(started) ? itsProfiles.length : (opts.jobs ?? DEFAULT_JOBS);
    /** Results are reported in profile order: a finished item waits for the ones before it. */
    let nextToEmit = 0;
    const emitReady = () => {
      while (nextToEmit < itsProfiles.length && byProfile.has(itsProfiles[nextToEmit] as Profile))
        emit(itsProfiles[nextToEmit++] as Profile);
    };
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
        // a proxy that is not there carries no load: its items take no slot
        const release = started && !isUp(started) ? () => {} : await slots.acquire();
        try {
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
          emitReady();
        } finally {
          release();
        }
      });
      // results in profile order, whatever order the work items ended in
    } finally {
      unregisterProxy();
      await started?.stop();
    }
    return info;
  }
}
