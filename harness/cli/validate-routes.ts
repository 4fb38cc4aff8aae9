/**
 * How `validate` finds each vendor host's route the way the agent's machine does, before it
 * validates the proxies found (lab mode: the profiles' exchanges; live mode: the catalog rows):
 *
 *  - `--proxy URL`: the configured proxy, for every host;
 *  - `--proxy auto` (WPAD through DNS): `wpad.<dns suffix>` is looked up and, when it resolves,
 *    `http://wpad.<dns suffix>/wpad.dat` is fetched and run; when it does not resolve, WPAD found
 *    no script and every host goes DIRECT (what WinHTTP does), or, with `--pac`, that script decides;
 *  - `--pac URL|FILE`: that script.
 *
 * A script's FindProxyForURL(url, host) answer is tried in order, as a fail-open agent tries it
 * (harness/route/policies.ts): a PROXY it cannot connect to by the connect deadline → the next
 * entry; DIRECT → the route is DIRECT; SOCKS and HTTPS entries → the agent does not speak them,
 * the next entry. `--no-proxy` patterns (the Windows bypass list) make a host DIRECT before anything
 * else is asked. A script that cannot be fetched, does not load, throws, runs past its deadline or
 * answers something that does not parse stops validate with one line (exit 2): never DIRECT.
 *
 * Names go through `--resolve host:address` first, then the operating system's resolver
 * (`dns.promises.lookup`), unless PROXYCHECK_OS_RESOLVER=off (the tests: no DNS query ever). The
 * script itself runs in the PAC engine (harness/route/pac.ts), whose dnsResolve()/isInNet() see
 * the addresses looked up beforehand for the vendor hosts, the script's own host and --resolve.
 */
import dns from 'node:dns';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import { fileURLToPath } from 'node:url';
import { kindOf } from '../agent/kinds/index.ts';
import { errorMessage, UsageError } from '../errors.ts';
import type { CheckResult, DiscoveredHost, ProxyDiscovery, ProxyInfo, RunReport } from '../model.ts';
import { parseProxyUrl } from '../proxies/external.ts';
import { PAC_FETCH_DEADLINE_MS, PAC_RUN_DEADLINE_MS, scriptUrlFor } from '../route/client-network.ts';
import { loadPac, type Pac, type PacEntry, type PacSource } from '../route/pac.ts';
import { assembleReport, endpointOf } from '../runner/result.ts';
import { type Profile, type ProfileExchange, resolveHost, type ScenarioSet } from '../scenarios.ts';

export const OS_RESOLVER_ENV = 'PROXYCHECK_OS_RESOLVER';
/** How long a name lookup through the operating system may take. */
export const LOOKUP_DEADLINE_MS = 5_000;

/** A one-line error about discovery (a script that cannot be used): exit 2, nothing validated. */
export class DiscoveryError extends UsageError {
  constructor(message: string) {
    super(oneLine(message));
    this.name = 'DiscoveryError';
  }
}

const oneLine = (s: string) => s.replace(/\s*[\r\n]+\s*/g, ' ').trim();

// ---------------------------------------------------------------------------------------------
// names

/** `--resolve host:address` (repeatable): the address for every port of that name, like curl's. */
export function parseResolveFlags(values: string[]): Map<string, string> {
  const out = new Map<string, string>();
  for (const v of values) {
    const i = v.indexOf(':');
    const host = i > 0 ? v.slice(0, i).trim().toLowerCase() : '';
    const address =
      i > 0
        ? v
            .slice(i + 1)
            .trim()
            .replace(/^\[(.*)\]$/, '$1')
        : '';
    if (!host || /[\s/]/.test(host) || !net.isIP(address))
      throw new UsageError(
        `--resolve "${v}": expected host:address with an IP address, e.g. wpad.corp.example:10.0.0.5`,
      );
    out.set(host, address);
  }
  return out;
}

export type Lookup = { ok: true; address: string } | { ok: false; error: string };

/** The agent machine's name service: --resolve entries, then the OS resolver (unless it is off). */
export interface NameService {
  lookup(name: string): Promise<Lookup>;
  /** What lookup() found for a name, or --resolve gives, synchronously (the PAC engine asks this way). */
  known(name: string): string | undefined;
}

export function nameService(
  overrides: Map<string, string>,
  o: { osResolver: boolean; deadlineMs?: number },
): NameService {
  const cache = new Map<string, Promise<Lookup>>();
  const done = new Map<string, Lookup>();
  const deadlineMs = o.deadlineMs ?? LOOKUP_DEADLINE_MS;
  const ask = async (name: string): Promise<Lookup> => {
    const bare = name.replace(/^\[(.*)\]$/, '$1');
    if (net.isIP(bare)) return { ok: true, address: bare };
    const given = overrides.get(bare.toLowerCase());
    if (given) return { ok: true, address: given };
    if (!o.osResolver)
      return {
        ok: false,
        error: `does not resolve (no --resolve entry, and the OS resolver is off: ${OS_RESOLVER_ENV}=off)`,
      };
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<Lookup>((resolve) => {
      timer = setTimeout(
        () => resolve({ ok: false, error: `no answer from the OS resolver within ${deadlineMs} ms` }),
        deadlineMs,
      );
    });
    const asked = dns.promises.lookup(bare, { all: true }).then(
      (all): Lookup => {
        const pick = all.find((a) => a.family === 4) ?? all[0];
        return pick ? { ok: true, address: pick.address } : { ok: false, error: 'does not resolve' };
      },
      (err: NodeJS.ErrnoException): Lookup => ({
        ok: false,
        error: /ENOTFOUND|ENODATA|EAI_NONAME/.test(err.code ?? '')
          ? `does not resolve (${err.code})`
          : `could not be looked up (${err.code ?? errorMessage(err)})`,
      }),
    );
    try {
      return await Promise.race([asked, deadline]);
    } finally {
      clearTimeout(timer);
    }
  };
  return {
    lookup(name) {
      const key = name.toLowerCase();
      let p = cache.get(key);
      if (!p) {
        p = ask(name).then((r) => {
          done.set(key, r);
          return r;
        });
        cache.set(key, p);
      }
      return p;
    },
    known(name) {
      const bare = name.replace(/^\[(.*)\]$/, '$1');
      if (net.isIP(bare)) return bare;
      const key = bare.toLowerCase();
      const r = done.get(key);
      return r?.ok ? r.address : overrides.get(key);
    },
  };
}

/**
 * The machine's DNS suffix from resolv.conf text: the first name of its `search` or `domain` line
 * (when there are several such lines, the last one counts, as the resolver reads them).
 */
export function dnsSuffixFrom(text: string): string | undefined {
  let suffix: string | undefined;
  for (const raw of text.split('\n')) {
    const line = raw.replace(/[#;].*$/, '').trim();
    const m = /^(search|domain)\s+(\S+)/.exec(line);
    if (m?.[2]) suffix = m[2].replace(/\.$/, '');
  }
  return suffix || undefined;
}

export function machineDnsSuffix(file = '/etc/resolv.conf'): string | undefined {
  try {
    return dnsSuffixFrom(readFileSync(file, 'utf8'));
  } catch {
    return undefined;
  }
}

/** `--dns-suffix NAME`: a DNS name (no scheme, no port). */
export function checkDnsSuffix(value: string): string {
  const v = value.trim().replace(/^\.+|\.+$/g, '');
  if (!/^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$/.test(v))
    throw new UsageError(`--dns-suffix "${value}" is not a DNS name like corp.example`);
  return v.toLowerCase();
}

// ---------------------------------------------------------------------------------------------
// the bypass list

export interface Bypass {
  patterns: string[];
  /** The pattern that makes `host` DIRECT, if any. */
  match(host: string): string | undefined;
}

/**
 * `--no-proxy` (repeatable; entries split on `,` or `;`), as the Windows bypass list reads them:
 * a pattern matches the whole host name, case-insensitively, `*` standing for any characters
 * (so `*.corp.example` matches hosts under corp.example, not corp.example itself), and `<local>`
 * matches plain host names (no dot).
 */
export function parseNoProxy(values: string[]): Bypass {
  const patterns = values
    .flatMap((v) => v.split(/[,;]/))
    .map((s) => s.trim())
    .filter(Boolean);
  const rules: Array<[string, (h: string) => boolean]> = patterns.map((p) => {
    if (p.toLowerCase() === '<local>') return [p, (h: string) => !h.includes('.')];
    if (/^<.*>$/.test(p))
      throw new UsageError(`--no-proxy: "${p}" is not a pattern (<local>, or host names with * wildcards)`);
    if (/[/\s]/.test(p))
      throw new UsageError(
        `--no-proxy: "${p}" is not a host pattern (no scheme, path or spaces: e.g. *.corp.example)`,
      );
    const re = new RegExp(
      `^${p
        .split('*')
        .map((s) => s.replace(/[.+?^${}()|[\]\\]/g, '\\$&'))
        .join('.*')}$`,
      'i',
    );
    return [p, (h: string) => re.test(h)];
  });
  return {
    patterns,
    match: (host) => rules.find(([, test]) => test(host))?.[0],
  };
}

// ---------------------------------------------------------------------------------------------
// the script

/** `--pac URL|FILE`: an http(s) URL is fetched, a file:// URL or anything else is a file. */
export function parsePacArg(value: string): { url: string } | { file: string } {
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(value)) {
    let u: URL;
    try {
      u = new URL(value);
    } catch {
      throw new UsageError(`--pac "${value}" is not a URL`);
    }
    if (u.protocol === 'file:') return { file: fileURLToPath(u) };
    if (u.protocol !== 'http:' && u.protocol !== 'https:')
      throw new UsageError(`--pac: ${u.protocol}// scripts are not fetched (http://, https:// or a file)`);
    return { url: value };
  }
  return { file: value };
}

/** A script that decides routes, or WPAD that found none. */
export type Decider =
  | { method: 'configured'; proxy: { name: string; port: number; address: string } }
  | { method: 'wpad' | 'pac'; pac: Pac; source: string; label: string }
  | { method: 'wpad'; none: string };

export interface ScriptOptions {
  names: NameService;
  /** WPAD first (--proxy auto), with this DNS suffix. */
  wpadSuffix?: string;
  /** The script --pac gives (alone, or when WPAD finds none). */
  pac?: { url: string } | { file: string };
  /** Names the script may ask about (the vendor hosts): looked up before it runs. */
  hosts: string[];
  /** Trust for an https PAC URL beyond Node's roots (--trust-ca). */
  extraTrust?: string[];
}

/** The notes printed before the routes (WPAD that found nothing, when --pac took over). */
export interface ChosenScript {
  decider: Decider;
  notes: string[];
}

/**
 * Finds the script as the agent's machine does (WPAD first when asked, then --pac) and loads it.
 * Rule for `--proxy auto --pac`: when wpad.<suffix> resolves, WPAD's script decides (and one that
 * cannot be used is an error, as any script); when it does not, WPAD found nothing and --pac decides.
 */
export async function chooseScript(o: ScriptOptions): Promise<ChosenScript> {
  const notes: string[] = [];
  const env = {
    resolve: (h: string) => o.names.known(h),
  };
  // what the script may ask of dnsResolve/isInNet, looked up beforehand (the engine asks synchronously)
  await Promise.all(o.hosts.map((h) => o.names.lookup(h)));
  const ca = o.extraTrust?.length ? [...tls.rootCertificates, ...o.extraTrust] : undefined;
  const load = async (method: 'wpad' | 'pac', src: PacSource, source: string): Promise<Decider> => {
    const label = method === 'wpad' ? `WPAD ${source}` : `PAC ${source}`;
    if ('url' in src) {
      const host = new URL(src.url).hostname.replace(/^\[(.*)\]$/, '$1');
      const r = await o.names.lookup(host);
      if (!r.ok) throw new DiscoveryError(`${label} could not be fetched: ${host} ${r.error}`);
    }
    const loaded = await loadPac(src, env, {
      fetchDeadlineMs: PAC_FETCH_DEADLINE_MS,
      ...(ca ? { ca } : {}),
    });
    if (!loaded.ok)
      throw new DiscoveryError(
        loaded.stage === 'fetch'
          ? `${label} could not be ${'url' in src ? 'fetched' : 'read'}: ${loaded.error}`
          : `${label} does not load: ${loaded.error}`,
      );
    return { method, pac: loaded.pac, source, label };
  };
  if (o.wpadSuffix) {
    const wpadHost = `wpad.${o.wpadSuffix}`;
    const url = `http://${wpadHost}/wpad.dat`;
    const r = await o.names.lookup(wpadHost);
    if (r.ok) return { decider: await load('wpad', { url }, url), notes };
    const none = `WPAD found no proxy script (${wpadHost} ${r.error})`;
    if (!o.pac) return { decider: { method: 'wpad', none }, notes };
    notes.push(`${none}: the --pac script decides`);
  }
  if (!o.pac) throw new UsageError('no proxy script to run: give --pac URL|FILE or --proxy auto');
  const source = 'url' in o.pac ? o.pac.url : o.pac.file;
  return { decider: await load('pac', o.pac, source), notes };
}

// ---------------------------------------------------------------------------------------------
// routes

/** One URL an agent opens: a vendor host at a port, tunnelled (https) or forwarded (http). */
export interface Target {
  host: string;
  port: number;
  forwarded: boolean;
  url: string;
}

export type Route =
  | { type: 'PROXY'; name: string; port: number; address: string }
  | { type: 'DIRECT' }
  | { type: 'NONE' };

/** The route found for one target, with how it was found (DiscoveredHost) and where it goes. */
export interface TargetRoute {
  target: Target;
  route: Route;
  found: DiscoveredHost;
}

/** One target per URL the agent opens: the same host, port and scheme give the same target. */
export function targetIndex(): (host: string, port: number, forwarded: boolean) => Target {
  const byUrl = new Map<string, Target>();
  return (host, port, forwarded) => {
    const url = scriptUrlFor(host, port, forwarded);
    const t = byUrl.get(url) ?? { host, port, forwarded, url };
    byUrl.set(url, t);
    return t;
  };
}

/** The URLs the selected profiles open, in profile order, each once. */
export function targetsOf(set: ScenarioSet, profiles: Profile[]): Map<ProfileExchange, Target> {
  const out = new Map<ProfileExchange, Target>();
  const target = targetIndex();
  for (const p of profiles)
    for (const x of p.exchanges)
      out.set(x, target(resolveHost(x.host, set), x.port, kindOf(x).forwarded === true));
  return out;
}

/**
 * One result row of a route: a profile (lab) or catalog (live) column, its endpoint, and the URL
 * whose route it takes.
 */
export interface RoutedRow {
  profile: string;
  endpoint: string;
  target: Target;
}

/** The rows of the selected profiles (lab mode), in profile order. */
export function profileRows(profiles: Profile[], targets: Map<ProfileExchange, Target>): RoutedRow[] {
  return profiles.flatMap((p) =>
    p.exchanges.map((x) => {
      const target = targets.get(x) as Target;
      return { profile: p.id, endpoint: endpointOf(target.host, x.port, x.name), target };
    }),
  );
}

/** host:port, an IPv6 address in brackets. */
const hostPort = (name: string, port: number) => `${name.includes(':') ? `[${name}]` : name}:${port}`;

const entryLabel = (e: PacEntry) => (e.type === 'DIRECT' ? 'DIRECT' : `${e.type} ${e.host}:${e.port}`);

type Probe = { ok: true; address: string } | { ok: false; why: string };

/** Can the agent open a TCP connection to the proxy within its connect deadline? */
export async function probeProxy(
  names: NameService,
  name: string,
  port: number,
  deadlineMs: number,
): Promise<Probe> {
  const r = await names.lookup(name);
  if (!r.ok) return { ok: false, why: `${name} ${r.error}` };
  const address = r.address;
  return new Promise<Probe>((resolve) => {
    const s = net.connect({ host: address, port });
    const done = (p: Probe) => {
      clearTimeout(timer);
      s.destroy();
      resolve(p);
    };
    const timer = setTimeout(
      () => done({ ok: false, why: `no TCP answer within ${deadlineMs} ms (the agent's connect deadline)` }),
      deadlineMs,
    );
    s.once('connect', () => done({ ok: true, address }));
    s.once('error', (err) => done({ ok: false, why: errorMessage(err) }));
  });
}

export interface RouteOptions {
  decider: Decider;
  bypass: Bypass;
  names: NameService;
  /** The agent's connect deadline for a PROXY entry. */
  connectDeadlineMs: number;
}

/** Each target's route, as the agent finds it; a script that fails throws DiscoveryError. */
export async function routeTargets(targets: Target[], o: RouteOptions): Promise<TargetRoute[]> {
  const d = o.decider;
  const probes = new Map<string, Promise<Probe>>();
  const probe = (name: string, port: number) => {
    const key = `${name.toLowerCase()}:${port}`;
    let p = probes.get(key);
    if (!p) {
      p = probeProxy(o.names, name, port, o.connectDeadlineMs);
      probes.set(key, p);
    }
    return p;
  };
  const out: TargetRoute[] = [];
  for (const target of targets) {
    const base = { host: target.host, port: target.port, url: target.url, method: d.method };
    const withSource = 'source' in d ? { source: d.source } : {};
    const bypass = o.bypass.match(target.host);
    if (bypass) {
      out.push({
        target,
        route: { type: 'DIRECT' },
        found: {
          ...base,
          ...withSource,
          bypass,
          note: `--no-proxy ${bypass} matches ${target.host}${d.method === 'configured' ? '' : ': the script is not asked'}`,
        },
      });
      continue;
    }
    if (d.method === 'configured') {
      out.push({
        target,
        route: { type: 'PROXY', ...d.proxy },
        found: { ...base, note: `the configured proxy ${d.proxy.name}:${d.proxy.port}` },
      });
      continue;
    }
    if ('none' in d) {
      out.push({ target, route: { type: 'DIRECT' }, found: { ...base, note: d.none } });
      continue;
    }
    const answer = await d.pac.find(target.url, target.host, { deadlineMs: PAC_RUN_DEADLINE_MS });
    if (!answer.ok) {
      const asked = `FindProxyForURL("${target.url}", "${target.host}")`;
      throw new DiscoveryError(
        answer.stage === 'answer'
          ? `${d.label}: ${asked} answered something that does not parse: ${answer.error}`
          : `${d.label}: ${asked}: ${answer.error}`,
      );
    }
    const tried: Array<{ route: string; outcome: string }> = [];
    let route: Route = { type: 'NONE' };
    for (const entry of answer.entries) {
      if (entry.type === 'DIRECT') {
        route = { type: 'DIRECT' };
        break;
      }
      if (entry.type !== 'PROXY') {
        tried.push({
          route: entryLabel(entry),
          outcome: `not supported by the agent (it speaks to HTTP proxies only: PROXY entries)`,
        });
        continue;
      }
      const p = await probe(entry.host, entry.port);
      if (p.ok) {
        route = { type: 'PROXY', name: entry.host, port: entry.port, address: p.address };
        break;
      }
      tried.push({ route: entryLabel(entry), outcome: `unreachable: ${p.why}` });
    }
    const passed = tried.map((t) => `${t.route} (${t.outcome})`).join(', ');
    const took =
      route.type === 'NONE'
        ? `; no entry works: ${passed}`
        : tried.length
          ? `; the agent takes ${route.type === 'DIRECT' ? 'DIRECT' : `PROXY ${hostPort(route.name, route.port)}`} after ${passed}`
          : '';
    out.push({
      target,
      route,
      found: {
        ...base,
        ...withSource,
        answer: answer.raw,
        ...(tried.length ? { tried } : {}),
        note: `${d.label} answers "${answer.raw}" for ${target.url}${took}`,
      },
    });
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// groups, results, the report

export const DIRECT_ID = 'direct';
export const NO_ROUTE_ID = 'no-route';

export interface RouteGroup {
  /** The proxy id in results: external (--proxy URL), wpad:host:port, pac:host:port, direct, no-route. */
  id: string;
  route: Route;
  routes: TargetRoute[];
  discovery: ProxyDiscovery;
}

/** The routes grouped as they are validated: each proxy, then DIRECT, then no route, in first-seen order. */
export function groupRoutes(routes: TargetRoute[], decider: Decider): RouteGroup[] {
  const groups = new Map<string, RouteGroup>();
  for (const r of routes) {
    const id =
      r.route.type === 'DIRECT'
        ? DIRECT_ID
        : r.route.type === 'NONE'
          ? NO_ROUTE_ID
          : decider.method === 'configured'
            ? 'external'
            : `${decider.method}:${hostPort(r.route.name, r.route.port)}`;
    let g = groups.get(id);
    if (!g) {
      const method = r.route.type === 'DIRECT' ? 'direct' : decider.method;
      g = {
        id,
        route: r.route,
        routes: [],
        discovery: {
          method,
          ...(r.route.type === 'PROXY' ? { proxy: hostPort(r.route.name, r.route.port) } : {}),
          ...('source' in decider && method !== 'direct' ? { source: decider.source } : {}),
          hosts: [],
        },
      };
      groups.set(id, g);
    }
    g.routes.push(r);
    g.discovery.hosts.push(r.found);
  }
  const rank = (g: RouteGroup) => (g.id === DIRECT_ID ? 1 : g.id === NO_ROUTE_ID ? 2 : 0);
  return [...groups.values()].sort((a, b) => rank(a) - rank(b));
}

/** The selected profiles cut down to the exchanges of one route (profiles with none left out). */
export function profilesOn(profiles: Profile[], group: RouteGroup, targets: Map<ProfileExchange, Target>) {
  const mine = new Set(group.routes.map((r) => r.target));
  return profiles
    .map((p) => ({ ...p, exchanges: p.exchanges.filter((x) => mine.has(targets.get(x) as Target)) }))
    .filter((p) => p.exchanges.length > 0);
}

const METHOD_WORDS: Record<DiscoveredHost['method'], string> = {
  configured: 'the configured proxy settings',
  wpad: 'WPAD',
  pac: 'the PAC script',
};

/** DIRECT and no-route rows (exchanges, catalog rows): reported, one result each (check `route`), never replayed. */
export function unreplayedResults(group: RouteGroup, rows: RoutedRow[]): CheckResult[] {
  const mine = new Map(group.routes.map((r) => [r.target, r]));
  const out: CheckResult[] = [];
  for (const { profile, endpoint, target } of rows) {
    const r = mine.get(target);
    if (!r) continue;
    const f = r.found;
    const evidence = {
      method: f.method,
      url: f.url,
      ...(f.source ? { source: f.source } : {}),
      ...(f.answer !== undefined ? { answer: f.answer } : {}),
      ...(f.bypass ? { bypass: f.bypass } : {}),
      ...(f.tried ? { tried: f.tried } : {}),
    };
    const direct = r.route.type === 'DIRECT';
    const by = f.bypass ? '--no-proxy' : METHOD_WORDS[f.method];
    out.push({
      id: `${group.id}/${profile}/${endpoint}/route`,
      proxy: group.id,
      profile,
      endpoint,
      check: 'route',
      outcome: direct ? 'skip' : 'fail',
      expected: direct ? 'skip' : 'pass',
      ...(direct
        ? { expectedReason: 'the agent goes DIRECT here: there is no proxy on this route to validate' }
        : {}),
      matched: direct,
      message: direct
        ? `the route is DIRECT by ${by}: ${f.note}; no proxy on this route to validate`
        : `no route: ${f.note}`,
      evidence,
      remediation: direct
        ? ''
        : 'make a proxy the script names reachable from the agents, or end its answer with a route that works',
      durationMs: 0,
    });
  }
  return out;
}

export function unreplayedProxy(group: RouteGroup): ProxyInfo {
  return group.id === DIRECT_ID
    ? { id: group.id, kind: 'direct', runtime: 'none', version: 'no proxy', discovery: group.discovery }
    : { id: group.id, kind: 'none', runtime: 'none', version: 'no route works', discovery: group.discovery };
}

/** The reports of each route's run and the unreplayed results (and any others), as one report. */
export function mergeReports(
  startedAt: string,
  runs: Array<{ group: RouteGroup; report: RunReport }>,
  unreplayed: Array<{ group: RouteGroup; results: CheckResult[] }>,
  others: Array<{ proxy: ProxyInfo; results: CheckResult[] }> = [],
): RunReport {
  const proxies: ProxyInfo[] = [];
  const results: CheckResult[] = [];
  const stale = [];
  for (const { group, report } of runs) {
    for (const p of report.proxies)
      proxies.push(p.id === group.id ? { ...p, discovery: group.discovery } : p);
    results.push(...report.results);
    stale.push(...(report.staleDeviations ?? []));
  }
  for (const { group, results: rs } of unreplayed) {
    proxies.push(unreplayedProxy(group));
    results.push(...rs);
  }
  for (const { proxy, results: rs } of others) {
    proxies.push(proxy);
    results.push(...rs);
  }
  const merged = assembleReport(startedAt, proxies, results);
  return stale.length ? { ...merged, staleDeviations: stale } : merged;
}

// ---------------------------------------------------------------------------------------------
// what is printed first

const plural = (n: number, one: string) => `${n} ${one}${n === 1 ? '' : 's'}`;

/**
 * The routes found, one line per method, e.g. `PAC /tmp/x.pac: 12 hosts → PROXY 127.0.0.1:3128,
 * 3 hosts → DIRECT`, then a line per entry that was passed over.
 */
export function routeLines(notes: string[], decider: Decider, routes: TargetRoute[]): string[] {
  const head =
    decider.method === 'configured'
      ? `configured proxy ${hostPort(decider.proxy.name, decider.proxy.port)}`
      : 'none' in decider
        ? decider.none
        : decider.label;
  const counts = new Map<string, Set<string>>();
  for (const r of routes) {
    const label =
      r.route.type === 'PROXY'
        ? `PROXY ${hostPort(r.route.name, r.route.port)}`
        : r.route.type === 'DIRECT'
          ? r.found.bypass
            ? 'DIRECT (--no-proxy)'
            : 'DIRECT'
          : 'no route (no entry works)';
    const hosts = counts.get(label) ?? new Set<string>();
    hosts.add(r.target.host);
    counts.set(label, hosts);
  }
  // proxies first (as found), then DIRECT, then hosts with no route
  const rank = (label: string) => (label.startsWith('PROXY') ? 0 : label.startsWith('DIRECT') ? 1 : 2);
  const ordered = [...counts].sort(([a], [b]) => rank(a) - rank(b));
  const lines = [
    ...notes,
    `${head}: ${ordered.map(([label, hosts]) => `${plural(hosts.size, 'host')} → ${label}`).join(', ')}`,
  ];
  const passed = new Map<string, { outcome: string; hosts: Set<string> }>();
  for (const r of routes)
    for (const t of r.found.tried ?? []) {
      const k = `${t.route}\u0000${t.outcome}`;
      const e = passed.get(k) ?? { outcome: t.outcome, hosts: new Set<string>() };
      e.hosts.add(r.target.host);
      passed.set(k, e);
    }
  for (const [k, e] of passed)
    lines.push(`  passed over ${k.split('\u0000')[0]} for ${plural(e.hosts.size, 'host')}: ${e.outcome}`);
  return lines;
}

// ---------------------------------------------------------------------------------------------
// both modes: how the routes are found, and the proxy each one is validated through

/** How the proxy is found, from --proxy, --pac and their companions (validate-command.ts checks them). */
export interface HowToFind {
  /** --proxy URL. */
  configured?: string;
  /** --proxy auto: WPAD with this DNS suffix. */
  wpadSuffix?: string;
  pac?: { url: string } | { file: string };
  noProxy: string[];
  resolve: string[];
}

export interface FoundRoutes {
  decider: Decider;
  routes: TargetRoute[];
  /** Each proxy (in first-seen order), then DIRECT, then no route. */
  groups: RouteGroup[];
  /** What is printed first: the routes per method (none for a plain --proxy URL without --no-proxy). */
  lines: string[];
}

/**
 * Each target's route as the agent finds it (the configured proxy, WPAD, the script; --no-proxy
 * first), grouped as they are validated. A script that cannot be used throws DiscoveryError.
 */
export async function findRoutes(
  how: HowToFind,
  targets: Target[],
  o: { extraTrust?: string[]; connectDeadlineMs: number },
): Promise<FoundRoutes> {
  const overrides = parseResolveFlags(how.resolve);
  const bypass = parseNoProxy(how.noProxy);
  const names = nameService(overrides, { osResolver: process.env[OS_RESOLVER_ENV] !== 'off' });
  let chosen: ChosenScript;
  if (how.configured) {
    const p = parseProxyUrl(how.configured);
    const address = overrides.get(p.host.toLowerCase()) ?? p.host;
    chosen = { decider: { method: 'configured', proxy: { name: p.host, port: p.port, address } }, notes: [] };
  } else {
    chosen = await chooseScript({
      names,
      ...(how.wpadSuffix ? { wpadSuffix: how.wpadSuffix } : {}),
      ...(how.pac ? { pac: how.pac } : {}),
      hosts: [...new Set(targets.map((t) => t.host))],
      ...(o.extraTrust ? { extraTrust: o.extraTrust } : {}),
    });
  }
  const { decider } = chosen;
  let routes: TargetRoute[];
  try {
    routes = await routeTargets(targets, { decider, bypass, names, connectDeadlineMs: o.connectDeadlineMs });
  } finally {
    if ('pac' in decider) await decider.pac.close();
  }
  const discovered = decider.method !== 'configured' || bypass.patterns.length > 0;
  return {
    decider,
    routes,
    groups: groupRoutes(routes, decider),
    lines: discovered ? routeLines(chosen.notes, decider, routes) : [],
  };
}

/**
 * The URL a PROXY route is validated through: the configured proxy as given (its URL may carry
 * credentials) unless --resolve names its address, else http://address:port.
 */
export function proxyUrlOf(route: Extract<Route, { type: 'PROXY' }>, how: HowToFind): string {
  return how.configured && route.address === route.name
    ? how.configured
    : `http://${hostPort(route.address, route.port)}`;
}
