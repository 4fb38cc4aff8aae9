/**
 * How many results a run reports, derived from the scenario data rather than written down: every
 * exchange of every profile run reports the checks its kind lists (kindOf(x).checks(x)) and those
 * of the route policies it declares (`failover` → failover, a profile that falls back to auto detect → fallback; counted
 * once whether the kind lists them itself or the runner adds them), once per proxy.
 */
import { kindOf } from '../../harness/agent/kinds/index.ts';
import type { ProfileExchange, ScenarioSet } from '../../harness/scenarios.ts';

/** The checks one exchange reports. */
export function exchangeChecks(x: ProfileExchange): Set<string> {
  const policies = [
    ...(x.failover ? ['failover'] : []),
    ...(x.proxyUnreachable?.fallback === 'auto-detect' ? ['fallback'] : []),
  ];
  return new Set([...kindOf(x).checks(x), ...policies]);
}

/** Results one proxy reports for `profiles` (ids; every profile of the set when omitted). */
export function resultsPerProxy(set: ScenarioSet, profiles?: string[]): number {
  const ids = profiles ?? [...set.profiles.keys()];
  let n = 0;
  for (const id of ids) {
    const profile = set.profiles.get(id);
    if (!profile) throw new Error(`no profile "${id}" in the scenarios`);
    for (const x of profile.exchanges) n += exchangeChecks(x).size;
  }
  return n;
}

/**
 * Results of a run of `proxies` proxies (a count or their ids) over `profiles`. A proxy the agent
 * has credentials for (a definition with `auth`, or availability auth-loop) adds `proxy-auth` to
 * every tunnelled exchange.
 */
export function expectedResults(set: ScenarioSet, proxies: number | string[], profiles?: string[]): number {
  const base = (typeof proxies === 'number' ? proxies : proxies.length) * resultsPerProxy(set, profiles);
  if (typeof proxies === 'number') return base;
  const withAuth = proxies.filter((id) => {
    const d = set.proxies.get(id);
    return d && ((d.auth ?? 'none') !== 'none' || d.availability === 'auth-loop');
  }).length;
  return base + withAuth * tunnelledExchanges(set, profiles);
}

/** Exchanges that go through a CONNECT tunnel (every kind but forwarded plain HTTP). */
function tunnelledExchanges(set: ScenarioSet, profiles?: string[]): number {
  const ids = profiles ?? [...set.profiles.keys()];
  return ids.flatMap((id) => set.profiles.get(id)?.exchanges ?? []).filter((x) => !kindOf(x).forwarded)
    .length;
}
