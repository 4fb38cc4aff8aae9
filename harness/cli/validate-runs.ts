/**
 * What `validate` runs once the routes are found (harness/cli/validate-routes.ts): in lab mode a
 * matrix per proxy found, with the profiles that reach it, against the lab origins; in live mode
 * the catalog rows per route against the real endpoints, and a result for every row no route
 * reaches. The command itself (options, one-line errors, reports) is harness/cli/validate-command.ts.
 */
import { UsageError } from '../errors.ts';
import { type LiveTarget, liveTargets, runLive } from '../live/live.ts';
import { flagFor } from '../live/params.ts';
import { publicRootStore } from '../live/roots.ts';
import type { CheckResult, RunReport } from '../model.ts';
import { ExternalProxy, parseProxyUrl } from '../proxies/external.ts';
import type { ProxyCredentials } from '../proxies/types.ts';
import { Progress, progressMode } from '../report/progress.ts';
import { scriptUrlFor } from '../route/client-network.ts';
import { DEFAULT_TIMEOUTS, endpointOf, runMatrix, selectProfiles } from '../runner/run.ts';
import type { ScenarioSet } from '../scenarios.ts';
import {
  findRoutes,
  type HowToFind,
  mergeReports,
  profileRows,
  profilesOn,
  proxyUrlOf,
  type RoutedRow,
  type RouteGroup,
  targetIndex,
  targetsOf,
  unreplayedResults,
} from './validate-routes.ts';

export interface LabValidation {
  how: HowToFind;
  scenarios: ScenarioSet;
  profiles: string[];
  credentials?: ProxyCredentials;
  /** --proxy-ca: for an https:// proxy given with --proxy. */
  proxyCa?: string[];
  labNet: number;
  extraTrust: string[];
  timerWait?: number;
  timeScale: number;
  quiet: boolean;
}

/**
 * Lab mode: each vendor host's route, found as the agent finds it; each proxy found validated with
 * the exchanges that take it (one runMatrix each); DIRECT hosts and hosts with no route reported;
 * one report. `routes` are the lines that say what was found (none for a plain --proxy URL).
 */
export async function validateLab(v: LabValidation): Promise<{ report: RunReport; routes: string[] }> {
  const startedAt = new Date().toISOString();
  const { how, scenarios } = v;
  const profiles = selectProfiles(scenarios, v.profiles);
  const targets = targetsOf(scenarios, profiles);
  const { groups, lines } = await findRoutes(how, [...new Set(targets.values())], {
    extraTrust: v.extraTrust,
    connectDeadlineMs: DEFAULT_TIMEOUTS.connectMs,
  });
  const proxied = groups
    .filter((g) => g.route.type === 'PROXY')
    .map((g) => ({ group: g, profiles: profilesOn(profiles, g, targets) }));
  const progress = new Progress({
    stream: process.stderr,
    mode: progressMode(process.stderr, v.quiet),
    total: proxied.reduce((n, p) => n + p.profiles.length, 0),
  });
  const runs: Array<{ group: RouteGroup; report: RunReport }> = [];
  try {
    for (const { group, profiles: theirs } of proxied) {
      const url = proxyUrlOf(group.route as ProxyRoute, how);
      const report = await runMatrix({
        scenarios,
        proxies: [
          new ExternalProxy({
            url,
            id: group.id,
            ...(v.credentials ? { credentials: v.credentials } : {}),
            ...(v.proxyCa ? { proxyCa: v.proxyCa } : {}),
          }),
        ],
        profiles: theirs,
        labNet: v.labNet,
        extraTrust: v.extraTrust,
        ...(v.timerWait !== undefined ? { timerWait: v.timerWait } : {}),
        timeScale: v.timeScale,
        ...progress.hooks(),
      });
      runs.push({ group, report });
    }
  } finally {
    progress.stop();
  }
  const rows = profileRows(profiles, targets);
  const unreplayed = groups
    .filter((g) => g.route.type !== 'PROXY')
    .map((group) => ({ group, results: unreplayedResults(group, rows) }));
  return { report: mergeReports(startedAt, runs, unreplayed), routes: lines };
}

type ProxyRoute = Extract<RouteGroup['route'], { type: 'PROXY' }>;

export interface LiveValidation {
  how: HowToFind;
  scenarios: ScenarioSet;
  catalogs: string[];
  params: Record<string, string>;
  credentials?: ProxyCredentials;
  /** --proxy-ca: for an https:// proxy given with --proxy. */
  proxyCa?: string[];
  /** --trust-ca as read (for an https PAC URL). */
  extraTrust: string[];
  /** --trust-ca split into certificates (for the endpoints). */
  liveTrust: string[];
}

/** The proxy id of catalog rows whose host is not known (a parameter not given) when a script decides. */
export const NOT_ROUTED_ID = 'not-routed';

/**
 * Live mode with routes found as the agent finds them: each catalog row's URL asked of the
 * configured proxy, WPAD or the script (--no-proxy first); each proxy found checked with runLive
 * on the rows that take it; DIRECT rows and rows with no route reported; one report. A row
 * missing a parameter has no host to ask the script about: it goes with the configured proxy
 * (--proxy URL), else it is one `skip` under not-routed, naming the flag it needs.
 */
export async function validateLive(v: LiveValidation): Promise<{ report: RunReport; routes: string[] }> {
  const startedAt = new Date().toISOString();
  const { how, scenarios } = v;
  const all = liveTargets(scenarios, v.catalogs, v.params);
  if (!all.length) throw new UsageError('the selected catalogs have no endpoints in agent scope');
  const target = targetIndex();
  const rows: RoutedRow[] = [];
  const unknown: LiveTarget[] = [];
  for (const t of all) {
    if (t.host === undefined) unknown.push(t);
    else
      rows.push({
        profile: t.catalog,
        endpoint: endpointOf(t.host, t.row.port),
        target: target(t.host, t.row.port, t.row.transport === 'http'),
      });
  }
  const { groups, lines } = await findRoutes(how, [...new Set(rows.map((r) => r.target))], {
    extraTrust: v.extraTrust,
    connectDeadlineMs: DEFAULT_TIMEOUTS.connectMs,
  });
  const publicRoots = publicRootStore();
  const withConfigured = groups.find((g) => g.route.type === 'PROXY' && how.configured);
  const runs: Array<{ group: RouteGroup; report: RunReport }> = [];
  for (const group of groups.filter((g) => g.route.type === 'PROXY')) {
    const route = group.route as ProxyRoute;
    const urls = new Set(group.routes.map((r) => r.target.url));
    const p = parseProxyUrl(proxyUrlOf(route, how));
    const report = await runLive({
      proxy: {
        id: group.id,
        host: p.host,
        port: p.port,
        ...(v.credentials ? { credentials: v.credentials } : {}),
        ...(p.tls ? { tls: v.proxyCa ? { ca: v.proxyCa } : {} } : {}),
        url: redactedUrl(p),
      },
      scenarios,
      catalogs: v.catalogs,
      params: v.params,
      rows: (t) =>
        t.host === undefined
          ? group === withConfigured
          : urls.has(scriptUrlFor(t.host, t.row.port, t.row.transport === 'http')),
      publicRoots,
      extraTrust: v.liveTrust,
    });
    runs.push({ group, report });
  }
  const unreplayed = groups
    .filter((g) => g.route.type !== 'PROXY')
    .map((group) => ({ group, results: unreplayedResults(group, rows) }));
  const notRouted = withConfigured ? [] : unknown;
  const others = notRouted.length
    ? [
        {
          proxy: { id: NOT_ROUTED_ID, kind: 'none', runtime: 'none', version: 'host not known' },
          results: notRouted.map((t) => notRoutedResult(t)),
        },
      ]
    : [];
  const extra = notRouted.length
    ? [
        `  not asked for ${notRouted.length} ${notRouted.length === 1 ? 'row' : 'rows'} without a host: ${[
          ...new Set(notRouted.flatMap((t) => (t.missing ?? []).map(flagFor))),
        ].join(', ')} not given`,
      ]
    : [];
  return { report: mergeReports(startedAt, runs, unreplayed, others), routes: [...lines, ...extra] };
}

/** A catalog row missing a parameter, when a script decides routes: skipped, naming the flag. */
function notRoutedResult(t: LiveTarget): CheckResult {
  const endpoint = endpointOf(t.row.host, t.row.port);
  const flags = (t.missing ?? []).map(flagFor).join(' and ');
  return {
    id: `${NOT_ROUTED_ID}/${t.catalog}/${endpoint}/route`,
    proxy: NOT_ROUTED_ID,
    profile: t.catalog,
    endpoint,
    check: 'route',
    outcome: 'skip',
    expected: 'skip',
    expectedReason: 'the host is not known, so the script cannot be asked for its route',
    matched: true,
    message: `needs ${flags} for ${t.row.host}; not checked (without the host, FindProxyForURL cannot be asked for its route)`,
    evidence: { missing: t.missing ?? [] },
    remediation: '',
    durationMs: 0,
  };
}

export function redactedUrl(p: { host: string; port: number; tls?: true }): string {
  return `${p.tls ? 'https' : 'http'}://${p.host.includes(':') ? `[${p.host}]` : p.host}:${p.port}`;
}
