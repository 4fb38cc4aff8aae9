/**
 * The verdict model. Outcomes are a string enum; glyphs and colours belong to renderers only.
 *
 * - pass / fail / warn: the check ran and judged the proxy.
 * - skip: the check does not apply here; `message` carries the reason.
 * - setup_fail: our own lab or a proxy we start did not come up.
 * - harness_fail: a bug in proxycheck itself.
 * - dependency_fail: a check this one depends on did not pass, so this one could not run.
 * A check that did not run is never a pass.
 */
export const OUTCOMES = [
  'pass',
  'fail',
  'warn',
  'skip',
  'setup_fail',
  'harness_fail',
  'dependency_fail',
] as const;
export type Outcome = (typeof OUTCOMES)[number];

export const RESULT_SCHEMA_ID = 'proxycheck/result@2';

export interface Endpoint {
  host: string;
  port: number;
}

export function endpointKey(e: Endpoint): string {
  return `${e.host}:${e.port}`;
}

/** `host:port` or `host:port#variant` (a named exchange variant) back into its parts. */
export function parseEndpoint(endpoint: string): Endpoint & { variant?: string } {
  const [bare = endpoint, variant] = endpoint.split('#');
  const i = bare.lastIndexOf(':');
  return { host: bare.slice(0, i), port: Number(bare.slice(i + 1)), ...(variant ? { variant } : {}) };
}

export interface CheckResult {
  /** `<proxy>/<profile>/<host:port>/<check>` */
  id: string;
  proxy: string;
  profile: string;
  endpoint: string;
  check: string;
  outcome: Outcome;
  expected: Outcome;
  /** Why this expectation holds (from scenarios/expectations), when it is not the default `pass`. */
  expectedReason?: string;
  matched: boolean;
  message: string;
  evidence: Record<string, unknown>;
  remediation: string;
  durationMs: number;
}

export interface ProxyInfo {
  id: string;
  kind: string;
  runtime: string;
  version: string;
  url?: string;
  startMs?: number;
  /** `validate`: how the agents find this route (configured proxy, WPAD, PAC, or DIRECT), per host. */
  discovery?: ProxyDiscovery;
  /** The product behind it, from what it said (harness/report/fingerprint.ts). */
  product?: ProductFingerprint;
}

/** Products we recognise (harness/report/fingerprint.ts) and give remedies for (harness/report/products/). */
export const PRODUCT_IDS = [
  'squid',
  'apache-httpd',
  'apache-trafficserver',
  'tinyproxy',
  'privoxy',
  'mitmproxy',
  'zscaler',
  'netskope',
  'proxysg',
  'forcepoint',
  'paloalto',
  'fortinet',
  'proxy-chain',
  'unknown',
] as const;
export type ProductId = (typeof PRODUCT_IDS)[number];
export type ProductConfidence = 'high' | 'medium' | 'low';

export interface ProductFingerprint {
  id: ProductId;
  /** `Apache httpd` */
  name: string;
  version?: string;
  confidence: ProductConfidence;
  /** What told us, e.g. `"Server: Apache/2.4.71 (Debian)" in the CONNECT answer for host:13000`. */
  evidence: string[];
}

/** The way `validate` found a route, as the agent would (harness/cli/validate-routes.ts). */
export interface ProxyDiscovery {
  /** configured: --proxy URL; wpad, pac: the script's answer; direct: hosts that go DIRECT (any method). */
  method: 'configured' | 'wpad' | 'pac' | 'direct';
  /** The proxy as --proxy or the script names it (host:port); absent for DIRECT and for no route. */
  proxy?: string;
  /** Where the script came from (WPAD's URL, the PAC URL or file). */
  source?: string;
  /** Every exchange URL this route was chosen for, and why. */
  hosts: DiscoveredHost[];
}

export interface DiscoveredHost {
  host: string;
  port: number;
  /** What FindProxyForURL was asked (or would be). */
  url: string;
  /** The method that decided, when `method` above is direct (or the route's own). */
  method: 'configured' | 'wpad' | 'pac';
  source?: string;
  /** The script's answer as it said it. */
  answer?: string;
  /** The --no-proxy pattern that made the host DIRECT before anything else was asked. */
  bypass?: string;
  /** Entries of the answer the agent tried before this route, and why each was passed over. */
  tried?: Array<{ route: string; outcome: string }>;
  /** The decision in words. */
  note: string;
}

/** The product the remedies are written for (unknown: product-neutral text only). */
export type RemediationProduct = ProductId;

/** Settings to enter in one place of a product's configuration. */
export interface ProductSetting {
  /** Where: `squid.conf (…placement…)`, `records.config`, `the SSL Inspection policy`. */
  where: string;
  lines: string[];
}

/** What to change on one proxy so the agents work behind it (harness/report/remediation.ts). */
export interface ProxyRemediation {
  proxy: string;
  product: RemediationProduct;
  /** What told us the product, e.g. `"Server: squid/5.7" in the answer to host:13000`. */
  productEvidence?: string;
  /** `Apache httpd 2.4.71 (high confidence)` */
  productName?: string;
  /** Ports where every CONNECT was refused with 403, with the endpoints refused. */
  connectPorts: Array<{ port: number; endpoints: string[] }>;
  /** Endpoints refused with 403 on a port where others went through (a host-level rule). */
  refusedEndpoints: string[];
  /** Plain-HTTP endpoints whose forwarded request was refused with 403. */
  httpRefused?: string[];
  /** Hosts re-signed although pinned or the vendor says they must not be inspected. */
  noInspect: Array<{ host: string; pinned: boolean; reSignedBy: string; notHttp?: boolean }>;
  /** Hosts re-signed by a CA the agents do not trust (live mode without --trust-ca). */
  untrustedInspection: Array<{ host: string; reSignedBy: string }>;
  /** Endpoints where the proxy answered 407. */
  credentials: string[];
  /** Proxy authentication problems (check proxy-auth), one sentence each with its endpoints. */
  authProblems?: string[];
  /** Endpoints whose non-TLS protocol broke in a tunnel of a TLS-inspecting proxy. */
  nonTls?: string[];
  /** Ports other than 443 where TLS was re-signed (squid may be hiding an SSL_ports denial). */
  bumpedPorts?: number[];
  /** Long-lived tunnels were closed by an idle timer: they must survive this many silent seconds. */
  idleSeconds?: number;
  /** Long-lived tunnels were closed by a lifetime cap: they must live this many seconds. */
  lifetimeSeconds?: number;
  /** Inspected (bumped) connections were closed by an idle timer: they must survive this much silence. */
  idleInspectedSeconds?: number;
  /** The agent sent Proxy-Authorization and the origin received it (a credential leak). */
  leakedProxyAuthorization?: string[];
  /** CONNECT answers a strict client (Intel AMT, CIRA) rejects, and why. */
  strictConnect?: Array<{ endpoint: string; problems: string[] }>;
  /** 407 although credentials were sent: the schemes the proxy asks for and the one the agent used. */
  authSchemes?: Array<{ endpoint: string; offered: string[]; sent: string }>;
  /** The product's own settings (squid.conf, httpd.conf, records.config, a policy's list), when known. */
  settings?: ProductSetting[];
  /** squid.conf lines (squid only), directives only. */
  squidConf: string[];
  /** One sentence per fix, product-neutral. */
  text: string[];
}

import type { StaleDeviation } from './proxies/expectations.ts';

export interface RunReport {
  schema: typeof RESULT_SCHEMA_ID;
  startedAt: string;
  finishedAt: string;
  tool: { name: 'proxycheck'; version: string };
  proxies: ProxyInfo[];
  results: CheckResult[];
  summary: Record<Outcome, number> & { total: number; matched: number; unmatched: number };
  /** Per-proxy fixes, present only when some proxy has something to fix. */
  remediation?: ProxyRemediation[];
  /** Deviations of proxy definitions that no longer happen (their results came out as the knobs predict). */
  staleDeviations?: StaleDeviation[];
  /** One finding per root cause per proxy (harness/report/findings.ts). */
  findings?: Finding[];
  /** A verdict per agent and proxy: go, no-go or at risk (docs/reports.md, "Agent verdicts"). */
  agents?: AgentsBlock;
}

export type FindingSeverity = 'blocker' | 'security' | 'degraded';

/** One root cause on one proxy: what is wrong, whom it stops, what showed it, and the fix. */
export interface Finding {
  /** `<proxy>/<cause>`, stable. */
  id: string;
  proxy: string;
  /** connect-port, proxy-auth-leak, ..., or check:<id> for a check's other failures. */
  cause: string;
  severity: FindingSeverity;
  /** One line: "CONNECT refused to ports 13000, 14000: Kaspersky cannot reach its servers". */
  title: string;
  /** Profile ids of the agents it affects. */
  agents: string[];
  /** The results that show it (ids), at most 20, and how many there were. */
  evidence: string[];
  results: number;
  /** What to change: sentences, then the product's settings. */
  remedy: string[];
  settings?: ProductSetting[];
}

export type AgentVerdictValue = 'go' | 'no-go' | 'at-risk';

export interface AgentVerdict {
  /** Profile id. */
  agent: string;
  /** The profile's title. */
  title: string;
  proxy: string;
  verdict: AgentVerdictValue;
  /** One line. */
  reason: string;
  /** Ids of the findings behind the verdict. */
  findings: string[];
}

export const AGENTS_SCHEMA_ID = 'proxycheck/agents@1';

export interface AgentsBlock {
  schema: typeof AGENTS_SCHEMA_ID;
  /** How verdicts are decided, in words (docs/reports.md). */
  rule: string;
  verdicts: AgentVerdict[];
}

export function summarize(results: CheckResult[]): RunReport['summary'] {
  const s = Object.fromEntries(OUTCOMES.map((o) => [o, 0])) as Record<Outcome, number>;
  let matched = 0;
  for (const r of results) {
    s[r.outcome] += 1;
    if (r.matched) matched += 1;
  }
  return { ...s, total: results.length, matched, unmatched: results.length - matched };
}
