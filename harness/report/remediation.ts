/**
 * Per-proxy remediation built from a report's results: which CONNECT ports to allow, which hosts
 * to exclude from TLS inspection, whether the agents need credentials, how long tunnels must stay
 * open while idle. For squid (or a proxy we cannot identify) it also gives the exact squid.conf
 * lines; for other products plain text.
 *
 * Squid is recognised by what it says about itself: its version string (our squid kinds), or
 * `Server: squid/…`, `X-Squid-Error:` or `Via: … (squid/…)` in any answer quoted in the evidence.
 */
import { CHECK_ORDER, checkDefinition } from '../checks/index.ts';
import type { RemedyFacts } from '../checks/types.ts';
import {
  type CheckResult,
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
/** squid's request_timeout and client_idle_pconn_timeout defaults (5 and 2 minutes). */
const SQUID_DEFAULT_REQUEST_TIMEOUT_S = 300;
const SQUID_DEFAULT_CLIENT_IDLE_PCONN_S = 120;

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
    // what the proxy said inside a tunnel it intercepted (connect's look behind a 200)
    const reach = (r.evidence.reach ?? {}) as { insideHead?: unknown };
    const inside = SQUID_MARKER.exec(str(reach.insideHead));
    if (inside)
      return {
        product: 'squid',
        evidence: `"${inside[0]}" in its answer inside the tunnel to ${r.endpoint}`,
      };
  }
  if (proxy.version && proxy.version !== 'unknown') {
    return { product: 'other', evidence: `the proxy reports "${proxy.version}"` };
  }
  return { product: 'unknown' };
}

const hostOf = (endpoint: string) => parseEndpoint(endpoint).host;

function chunk<T>(items: T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

function forProxy(
  proxy: ProxyInfo,
  results: CheckResult[],
  rows: Map<string, CatalogEndpoint>,
): ProxyRemediation {
  const facts: RemedyFacts = {
    connectPorts: [],
    refusedEndpoints: [],
    noInspect: [],
    untrustedInspection: [],
    credentials: [],
  };
  // every check contributes what its results say must change (its remedy hook)
  const env = { rows };
  for (const id of CHECK_ORDER) checkDefinition(id).collectRemedy?.(results, facts, env);
  const unique = (xs: string[] | undefined) => [...new Set(xs ?? [])];
  const { product, evidence } = detectProduct(proxy, results);
  const rem: ProxyRemediation = {
    proxy: proxy.id,
    product,
    ...(evidence ? { productEvidence: evidence } : {}),
    ...facts,
    refusedEndpoints: unique(facts.refusedEndpoints),
    credentials: unique(facts.credentials),
    ...(facts.httpRefused ? { httpRefused: unique(facts.httpRefused) } : {}),
    ...(facts.nonTls ? { nonTls: unique(facts.nonTls) } : {}),
    squidConf: [],
    text: [],
  };
  rem.text = genericText(rem);
  if (product !== 'other') rem.squidConf = squidLines(rem);
  return rem;
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
      `Allow CONNECT to port${ports.length > 1 ? 's' : ''} ${ports.join(', ')}: the proxy refused it with 403 for ${list(r.connectPorts.flatMap((p) => p.endpoints))} (many proxies allow CONNECT to 443 only). This opens CONNECT to ${ports.length > 1 ? 'these ports' : 'this port'} for the destinations your other rules allow; no other port.`,
    );
  }
  if (ports.includes(443)) {
    out.push(
      "The proxy refuses CONNECT even to port 443: it probably does not let this machine (or the agents) use it at all; allow the agents' network before any deny rule.",
    );
  }
  if (r.refusedEndpoints.length) {
    out.push(
      `Allow CONNECT to ${list(r.refusedEndpoints)}: refused with 403 while other hosts on the same port went through (a host or category rule). This opens these hosts only.`,
    );
  }
  if (r.httpRefused?.length) {
    out.push(
      `Allow plain HTTP (forwarded requests) to ${list(r.httpRefused)}: the proxy refused them with 403 (squid: an http_access allow rule for these hosts above the final deny). This opens plain HTTP to these hosts only.`,
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
      )}: they were re-signed by ${by}${r.noInspect.some((n) => n.pinned) ? '; a pinned agent refuses any substitute key, even from a trusted CA' : ''}. This opens no port; only these hosts go uninspected.`,
    );
  }
  if (r.untrustedInspection.length) {
    const by = [...new Set(r.untrustedInspection.map((n) => n.reSignedBy))].map((b) => `"${b}"`).join(', ');
    out.push(
      `Deploy the inspection CA ${by} to the agents' trust store (then re-check with --trust-ca FILE), or exclude ${list(r.untrustedInspection.map((n) => n.host))} from inspection: the agents refuse these re-signed certificates. Deploying the CA opens nothing.`,
    );
  }
  if (r.bumpedPorts?.length && r.product !== 'other') {
    out.push(
      `If it is squid: make sure port(s) ${r.bumpedPorts.join(', ')} are in SSL_ports. On an ssl-bump port squid answers 200 even to a CONNECT its http_access denies and bumps the session to show the error, so a missing port looks like interception, and splicing alone does not help.`,
    );
  }
  if (r.nonTls?.length) {
    out.push(
      `Let CONNECT tunnels to ${list(r.nonTls)} carry traffic that is not TLS: the proxy inspects TLS and closed these tunnels when the agent spoke its own protocol. Exclude these hosts from TLS inspection and protocol enforcement before the proxy looks at the first bytes (squid: splice them at step 1). This opens no port; these hosts' tunnels are no longer inspected.`,
    );
  }
  if (r.credentials.length) {
    out.push(
      `Give the agents proxy credentials: the proxy answered 407 for ${list(r.credentials)}. Opening the proxy to unauthenticated clients (e.g. an extra "http_access allow") is not the fix; configure the agents' proxy user and password (proxycheck: --proxy-user and PROXYCHECK_PROXY_PASSWORD).`,
    );
  }
  for (const problem of r.authProblems ?? []) out.push(problem);
  if (r.lifetimeSeconds !== undefined) {
    out.push(
      `Let CONNECT tunnels live at least ${Math.ceil(r.lifetimeSeconds)} s: something ends them after a fixed time even while traffic flows (a lifetime cap), shorter than the agents' sessions: the proxy's maximum connection or session time, or a firewall's session limit on the way${r.product === 'squid' ? ' (squid itself has no lifetime cap on tunnels: client_lifetime does not apply to them)' : ''}. This opens no port and no host; it only stops cutting sessions short.`,
    );
  }
  if (r.idleInspectedSeconds !== undefined) {
    out.push(
      `Let inspected (TLS-intercepted) connections stay open while silent for more than ${Math.ceil(r.idleInspectedSeconds)} s: the agents are silent that long between keep-alives. This opens no port and no host.`,
    );
  }

  if (r.idleSeconds !== undefined) {
    out.push(
      `Let CONNECT tunnels stay open while silent for more than ${Math.ceil(r.idleSeconds)} s: the agents are silent that long between keep-alives and the proxy's idle timer closed their tunnels earlier. This opens no port and no host.`,
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
    // spliced at step 1, before squid peeks for a ClientHello, these hosts' tunnels carry any bytes.
    // Never "on_unsupported_protocol tunnel": squid re-checks the tunnelled bytes as a request with
    // no method, so "deny CONNECT !SSL_ports" no longer applies and ports the policy denies open up
    // (squid 5.7, measured).
    for (const group of chunk([...new Set(r.nonTls.map(hostOf))], 8))
      out.push(`acl proxycheck_nontls dstdomain ${group.join(' ')}`);
    out.push('ssl_bump splice proxycheck_nontls');
  }
  if (r.idleSeconds !== undefined) {
    out.push(`read_timeout ${Math.max(Math.ceil(r.idleSeconds) + 60, SQUID_DEFAULT_READ_TIMEOUT_S)} seconds`);
  }
  if (r.idleInspectedSeconds !== undefined) {
    // a bumped connection is an HTTP client connection to squid: its silence is timed by these,
    // not by read_timeout (squid 5.7: request_timeout before the first request, then
    // client_idle_pconn_timeout between requests)
    const n = Math.ceil(r.idleInspectedSeconds) + 60;
    out.push(`request_timeout ${Math.max(n, SQUID_DEFAULT_REQUEST_TIMEOUT_S)} seconds`);
    out.push(`client_idle_pconn_timeout ${Math.max(n, SQUID_DEFAULT_CLIENT_IDLE_PCONN_S)} seconds`);
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

export { insertSquidLines, renderRemediation } from './remediation-render.ts';
