/**
 * Per-proxy remediation built from a report's results: which CONNECT ports to allow, which hosts
 * to exclude from TLS inspection, whether the agents need credentials, how long tunnels must stay
 * open while idle. For squid (or a proxy we cannot identify) it also gives the exact squid.conf
 * lines; for other products plain text.
 *
 * Squid is recognised by what it says about itself: its version string (our squid kinds), or
 * `Server: squid/…`, `X-Squid-Error:` or `Via: … (squid/…)` in any answer quoted in the evidence.
 */
import {
  type CheckResult,
  endpointKey,
  type ProxyInfo,
  type ProxyRemediation,
  parseEndpoint,
  type RemediationProduct,
  type RunReport,
} from '../model.ts';
import { type CatalogEndpoint, resolveHost, type ScenarioSet } from '../scenarios.ts';

export type { ProxyRemediation };

type Product = RemediationProduct;

export interface RemediationOptions {
  /** The idle time asked for (--idle-seconds), when the keepalive evidence does not carry it. */
  idleSeconds?: number;
  /**
   * The run's scenario data: tells pinned rows from must-not-inspect ones where the evidence does
   * not (lab mode's pinning check also models the strictest agent for must-not-inspect hosts).
   */
  scenarios?: ScenarioSet;
}

/** Catalog rows by `host:port`, hosts resolved as the run resolved them. */
function rowsByEndpoint(set: ScenarioSet | undefined): Map<string, CatalogEndpoint> {
  const rows = new Map<string, CatalogEndpoint>();
  for (const c of set?.catalogs.values() ?? []) {
    for (const e of c.endpoints) {
      try {
        rows.set(`${resolveHost(e.host, set as ScenarioSet).toLowerCase()}:${e.port}`, e);
      } catch {
        // a host with no value for a parameter matches no result
      }
    }
  }
  return rows;
}

/** Ports in Debian's stock `Safe_ports` (a CONNECT to any other port is refused by `deny !Safe_ports`). */
const SQUID_SAFE_PORTS = (p: number) =>
  [80, 21, 443, 70, 210, 280, 488, 591, 777].includes(p) || (p >= 1025 && p <= 65535);
/** squid's default read_timeout (15 minutes), which also bounds idle CONNECT tunnels. */
const SQUID_DEFAULT_READ_TIMEOUT_S = 900;

const SQUID_MARKER = /^(?:Server: squid[^\r\n]*|X-Squid-Error: [^\r\n]*|Via: [^\r\n]*\(squid[^\r\n)]*\))$/im;

function str(v: unknown): string {
  return typeof v === 'string' ? v : '';
}

export function detectProduct(
  proxy: ProxyInfo,
  results: CheckResult[],
): { product: Product; evidence?: string } {
  if (/squid/i.test(proxy.version) || (/^squid-/.test(proxy.id) && proxy.kind !== 'external')) {
    return { product: 'squid', evidence: `the proxy reports "${proxy.version}"` };
  }
  for (const r of results) {
    const m = SQUID_MARKER.exec(str(r.evidence.answerHead));
    if (m) return { product: 'squid', evidence: `"${m[0]}" in the answer for ${r.endpoint}` };
  }
  if (proxy.version && proxy.version !== 'unknown') {
    return { product: 'other', evidence: `the proxy reports "${proxy.version}"` };
  }
  return { product: 'unknown' };
}

const isConnect = (r: CheckResult) => r.check === 'connect' && str(r.evidence.request).startsWith('CONNECT ');
const portOf = (endpoint: string) => parseEndpoint(endpoint).port;
const hostOf = (endpoint: string) => parseEndpoint(endpoint).host;
/** The catalog row key of a result endpoint (without a `#variant`). */
const rowKey = (endpoint: string) => endpointKey(parseEndpoint(endpoint)).toLowerCase();

function chunk<T>(items: T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

function idleOf(r: CheckResult, fallback: number | undefined): number | undefined {
  const e = r.evidence;
  for (const k of ['requiredSeconds', 'idleSeconds']) if (typeof e[k] === 'number') return e[k] as number;
  if (typeof e.idleMs === 'number') return (e.idleMs as number) / 1000;
  return fallback;
}

function forProxy(
  proxy: ProxyInfo,
  results: CheckResult[],
  opts: RemediationOptions,
  rows: Map<string, CatalogEndpoint>,
): ProxyRemediation {
  const fails = results.filter((r) => r.outcome === 'fail');

  // CONNECT refusals
  const passedPorts = new Set(
    results.filter((r) => isConnect(r) && r.outcome === 'pass').map((r) => portOf(r.endpoint)),
  );
  const refused = new Map<number, string[]>();
  const refusedEndpoints: string[] = [];
  const credentials: string[] = [];
  for (const r of fails.filter(isConnect)) {
    const status = Number(r.evidence.statusCode ?? 0);
    if (status === 407) credentials.push(r.endpoint);
    if (status !== 403) continue;
    const port = portOf(r.endpoint);
    if (passedPorts.has(port)) refusedEndpoints.push(r.endpoint);
    else refused.set(port, [...(refused.get(port) ?? []), r.endpoint]);
  }
  // forwarded plain-HTTP requests: 407 needs the same credentials, 403 an allow rule
  const httpRefused: string[] = [];
  for (const r of fails.filter((x) => x.check === 'forward')) {
    const status = Number(r.evidence.statusCode ?? 0);
    if (status === 407) credentials.push(r.endpoint);
    else if (status === 403) httpRefused.push(r.endpoint);
  }
  const connectPorts = [...refused]
    .sort(([a], [b]) => a - b)
    .map(([port, endpoints]) => ({ port, endpoints: [...new Set(endpoints)] }));

  // interception: a re-signed must-not-inspect host fails tls-interception, a re-signed pinned one
  // fails pinning; whether a host is pinned comes from the evidence (live mode), the catalog row,
  // or, failing both, from a pinning failure on a host that may otherwise be inspected
  const seen = new Map<string, { interception?: CheckResult; pinning?: CheckResult }>();
  for (const r of fails) {
    if (r.check === 'tls-interception' && str(r.evidence.reSignedBy)) {
      seen.set(r.endpoint, { ...seen.get(r.endpoint), interception: r });
    }
    if (r.check === 'pinning' && str(r.evidence.presentedIssuer)) {
      seen.set(r.endpoint, { ...seen.get(r.endpoint), pinning: r });
    }
  }
  const noInspect = new Map<
    string,
    { host: string; pinned: boolean; reSignedBy: string; notHttp?: boolean }
  >();
  const untrusted = new Map<string, { host: string; reSignedBy: string }>();
  for (const [endpoint, { interception, pinning }] of seen) {
    const host = hostOf(endpoint);
    const row = rows.get(rowKey(endpoint));
    const by = interception
      ? str(interception.evidence.reSignedByCN) || cnOf(str(interception.evidence.reSignedBy))
      : cnOf(str(pinning?.evidence.presentedIssuer));
    const flag = (v: unknown) => (typeof v === 'boolean' ? v : undefined);
    const mustNotInspect = flag(interception?.evidence.mustNotInspect) ?? row?.mustNotInspect;
    const pinned =
      flag(interception?.evidence.pinned) ?? row?.pinned ?? (pinning !== undefined && !interception);
    if (pinning || mustNotInspect !== false) {
      const prev = noInspect.get(host);
      noInspect.set(host, {
        host,
        pinned: pinned || (prev?.pinned ?? false),
        reSignedBy: prev?.reSignedBy ?? by,
      });
    } else untrusted.set(host, { host, reSignedBy: by });
  }
  // a warned interception (the vendor allows it) that the agent still refused: the CA is not deployed
  for (const r of results) {
    if (r.check !== 'tls-interception' || r.outcome !== 'warn' || !str(r.evidence.reSignedBy)) continue;
    const refused = results.some(
      (x) =>
        x.endpoint === r.endpoint &&
        x.outcome === 'dependency_fail' &&
        x.evidence.dependsOn === 'tls-interception',
    );
    const host = hostOf(r.endpoint);
    const by = cnOf(str(r.evidence.reSignedBy));
    const transport = rows.get(rowKey(r.endpoint))?.transport;
    if (transport === 'tls' || transport === 'mqtts') {
      // not HTTP inside TLS: a proxy that decrypts expects HTTP and breaks it (squid answers 400),
      // so deploying the CA cannot help; only not inspecting it does
      if (!noInspect.has(host)) noInspect.set(host, { host, pinned: false, reSignedBy: by, notHttp: true });
    } else if (refused && !noInspect.has(host)) untrusted.set(host, { host, reSignedBy: by });
  }
  // TLS re-signed on a port other than 443: on an ssl-bump port squid answers 200 even to a CONNECT
  // its http_access denies and bumps it to show the error, so the port may be missing from SSL_ports
  const bumpedPorts = [
    ...new Set(
      results
        .filter(
          (r) => r.check === 'tls-interception' && str(r.evidence.reSignedBy) && portOf(r.endpoint) !== 443,
        )
        .map((r) => portOf(r.endpoint)),
    ),
  ].sort((a, b) => a - b);
  // a proxy that intercepts TLS and breaks the tunnels of agents that do not speak TLS on them
  const intercepts = results.some((r) => r.check === 'tls-interception' && str(r.evidence.reSignedBy));
  const nonTls = intercepts
    ? results
        .filter(
          (r) =>
            r.check === 'payload' &&
            r.outcome === 'fail' &&
            /binary frames|tunnel closed|echoed/.test(r.message),
        )
        .filter((r) => !results.some((x) => x.endpoint === r.endpoint && x.check === 'tls-interception'))
        .map((r) => r.endpoint)
    : [];

  // idle tunnels
  const idleFails = fails.filter((r) => r.check === 'tunnel-keepalive');
  const idleSeconds = idleFails.length
    ? Math.max(...idleFails.map((r) => idleOf(r, opts.idleSeconds) ?? 0)) || opts.idleSeconds
    : undefined;

  const { product, evidence } = detectProduct(proxy, results);
  const rem: ProxyRemediation = {
    proxy: proxy.id,
    product,
    ...(evidence ? { productEvidence: evidence } : {}),
    connectPorts,
    refusedEndpoints: [...new Set(refusedEndpoints)],
    ...(httpRefused.length ? { httpRefused: [...new Set(httpRefused)] } : {}),
    noInspect: [...noInspect.values()].sort((a, b) => a.host.localeCompare(b.host)),
    untrustedInspection: [...untrusted.values()].sort((a, b) => a.host.localeCompare(b.host)),
    credentials: [...new Set(credentials)],
    ...(nonTls.length ? { nonTls: [...new Set(nonTls)] } : {}),
    ...(bumpedPorts.length ? { bumpedPorts } : {}),
    ...(idleSeconds !== undefined ? { idleSeconds } : {}),
    squidConf: [],
    text: [],
  };
  rem.text = genericText(rem);
  if (product !== 'other') rem.squidConf = squidLines(rem);
  return rem;
}

function cnOf(dn: string): string {
  return /(?:^|, |\n)CN=([^,\n]*)/.exec(dn)?.[1] ?? dn;
}

function list(items: string[], max = 6): string {
  return items.length <= max
    ? items.join(', ')
    : `${items.slice(0, max).join(', ')} and ${items.length - max} more`;
}

function genericText(r: ProxyRemediation): string[] {
  const out: string[] = [];
  const ports = r.connectPorts.map((p) => p.port);
  if (ports.length) {
    out.push(
      `Allow CONNECT to port${ports.length > 1 ? 's' : ''} ${ports.join(', ')}: the proxy refused it with 403 for ${list(r.connectPorts.flatMap((p) => p.endpoints))} (many proxies allow CONNECT to 443 only).`,
    );
  }
  if (ports.includes(443)) {
    out.push(
      "The proxy refuses CONNECT even to port 443: it probably does not let this machine (or the agents) use it at all; allow the agents' network before any deny rule.",
    );
  }
  if (r.refusedEndpoints.length) {
    out.push(
      `Allow CONNECT to ${list(r.refusedEndpoints)}: refused with 403 while other hosts on the same port went through (a host or category rule).`,
    );
  }
  if (r.httpRefused?.length) {
    out.push(
      `Allow plain HTTP (forwarded requests) to ${list(r.httpRefused)}: the proxy refused them with 403 (squid: an http_access allow rule for these hosts above the final deny).`,
    );
  }
  if (r.noInspect.length) {
    const by = [...new Set(r.noInspect.map((n) => n.reSignedBy))].map((b) => `"${b}"`).join(', ');
    out.push(
      `Exclude from TLS inspection (SSL bump / HTTPS inspection bypass list) ${list(
        r.noInspect.map(
          (n) =>
            `${n.host}${n.pinned ? ' (pinned)' : n.notHttp ? ' (not HTTP inside TLS: a proxy that decrypts and parses HTTP, like squid bump, breaks it even with its CA deployed)' : ' (vendor: must not be inspected)'}`,
        ),
        12,
      )}: they were re-signed by ${by}${r.noInspect.some((n) => n.pinned) ? '; a pinned agent refuses any substitute key, even from a trusted CA' : ''}.`,
    );
  }
  if (r.untrustedInspection.length) {
    const by = [...new Set(r.untrustedInspection.map((n) => n.reSignedBy))].map((b) => `"${b}"`).join(', ');
    out.push(
      `Deploy the inspection CA ${by} to the agents' trust store (then re-check with --trust-ca FILE), or exclude ${list(r.untrustedInspection.map((n) => n.host))} from inspection: the agents refuse these re-signed certificates.`,
    );
  }
  if (r.bumpedPorts?.length && r.product !== 'other') {
    out.push(
      `If it is squid: make sure port(s) ${r.bumpedPorts.join(', ')} are in SSL_ports. On an ssl-bump port squid answers 200 even to a CONNECT its http_access denies and bumps the session to show the error, so a missing port looks like interception, and splicing alone does not help.`,
    );
  }
  if (r.nonTls?.length) {
    out.push(
      `Let CONNECT tunnels to ${list(r.nonTls)} carry traffic that is not TLS: the proxy inspects TLS and closed these tunnels when the agent spoke its own protocol (exclude them from TLS inspection / protocol enforcement).`,
    );
  }
  if (r.credentials.length) {
    out.push(
      `Give the agents proxy credentials: the proxy answered 407 for ${list(r.credentials)}. Opening the proxy to unauthenticated clients (e.g. an extra "http_access allow") is not the fix; configure the agents' proxy user and password (proxycheck: --proxy-user and PROXYCHECK_PROXY_PASSWORD).`,
    );
  }
  if (r.idleSeconds !== undefined) {
    out.push(
      `Let CONNECT tunnels stay open while idle for at least ${Math.ceil(r.idleSeconds)} s: the proxy closed the agents' long-lived tunnels earlier.`,
    );
  }
  return out;
}

function squidLines(r: ProxyRemediation): string[] {
  const out: string[] = [];
  const ports = [...new Set([...r.connectPorts.map((p) => p.port), ...(r.bumpedPorts ?? [])])]
    .filter((p) => p !== 443)
    .sort((a, b) => a - b);
  for (const group of chunk(ports, 16)) out.push(`acl SSL_ports port ${group.join(' ')}`);
  const unsafe = ports.filter((p) => !SQUID_SAFE_PORTS(p));
  for (const group of chunk(unsafe, 16)) out.push(`acl Safe_ports port ${group.join(' ')}`);
  if (r.noInspect.length) {
    for (const group of chunk(
      r.noInspect.map((n) => n.host),
      8,
    ))
      out.push(`acl proxycheck_nobump ssl::server_name ${group.join(' ')}`);
    out.push('ssl_bump splice proxycheck_nobump');
  }
  if (r.nonTls?.length) {
    // only these hosts' non-TLS bytes are tunnelled (the bare "all" would tunnel any non-TLS CONNECT,
    // even one http_access denied: squid defers that denial on ssl-bump ports)
    for (const group of chunk([...new Set(r.nonTls.map(hostOf))], 8))
      out.push(`acl proxycheck_nontls dstdomain ${group.join(' ')}`);
    out.push('on_unsupported_protocol tunnel proxycheck_nontls');
  }
  if (r.idleSeconds !== undefined) {
    out.push(`read_timeout ${Math.max(Math.ceil(r.idleSeconds) + 60, SQUID_DEFAULT_READ_TIMEOUT_S)} seconds`);
  }
  return out;
}

function hasFix(r: ProxyRemediation): boolean {
  return r.text.length > 0;
}

/** Remediation for every proxy in the report that has something to fix (empty when nothing does). */
export function buildRemediation(report: RunReport, opts: RemediationOptions = {}): ProxyRemediation[] {
  const rows = rowsByEndpoint(opts.scenarios);
  return report.proxies
    .map((p) =>
      forProxy(
        p,
        report.results.filter((r) => r.proxy === p.id),
        opts,
        rows,
      ),
    )
    .filter(hasFix);
}

/** Adds the optional top-level `remediation` field when there is something to fix. */
export function withRemediation(report: RunReport, opts: RemediationOptions = {}): RunReport {
  const remediation = buildRemediation(report, opts);
  if (remediation.length) report.remediation = remediation;
  return report;
}

const SQUID_PLACEMENT =
  'acl lines next to your "acl SSL_ports port 443" line, before the http_access rules; "ssl_bump splice" before your first ssl_bump bump/stare rule';

/** The "Remediation" section printed after the verdict table; '' when there is nothing to fix. */
export function renderRemediation(items: ProxyRemediation[] | undefined): string {
  if (!items?.length) return '';
  const lines = ['', 'Remediation'];
  for (const r of items) {
    const what =
      r.product === 'squid'
        ? `squid, from ${r.productEvidence}`
        : r.product === 'other'
          ? `not squid: ${r.productEvidence}`
          : 'product unknown: squid lines and generic steps';
    lines.push(`proxy ${r.proxy} (${what}):`);
    for (const t of r.text) lines.push(`  - ${t}`);
    if (r.squidConf.length) {
      lines.push(
        `  ${r.product === 'squid' ? 'squid.conf' : 'if it is squid, squid.conf'} (${SQUID_PLACEMENT}):`,
      );
      for (const l of r.squidConf) lines.push(`    ${l}`);
    }
  }
  return lines.join('\n') + '\n';
}

/**
 * Puts remediation lines into a squid.conf text where the printed advice says: `acl` lines after
 * the last `acl SSL_ports` line (else before the first http_access or ssl_bump rule), `ssl_bump`
 * lines before the first ssl_bump rule, anything else at the end. Used to prove the advice works.
 */
export function insertSquidLines(conf: string, add: string[]): string {
  const lines = conf.replace(/\n$/, '').split('\n');
  const lastIndex = (re: RegExp) => lines.reduce((found, l, i) => (re.test(l) ? i : found), -1);
  const firstIndex = (re: RegExp) => lines.findIndex((l) => re.test(l));
  const acls = add.filter((l) => /^acl\s/.test(l));
  const bumps = add.filter((l) => /^ssl_bump\s/.test(l));
  const rest = add.filter((l) => !acls.includes(l) && !bumps.includes(l));
  if (bumps.length) {
    const at = firstIndex(/^ssl_bump\s/);
    lines.splice(at < 0 ? lines.length : at, 0, ...bumps);
  }
  if (acls.length) {
    const ssl = lastIndex(/^acl\s+SSL_ports\s/);
    const rule = firstIndex(/^(http_access|ssl_bump)\s/);
    const at = ssl >= 0 ? ssl + 1 : rule >= 0 ? rule : lines.length;
    lines.splice(at, 0, ...acls);
  }
  lines.push(...rest);
  return lines.join('\n') + '\n';
}
