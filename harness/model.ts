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

export const RESULT_SCHEMA_ID = 'proxycheck/result@1';

export interface Endpoint {
  host: string;
  port: number;
}

export function endpointKey(e: Endpoint): string {
  return `${e.host}:${e.port}`;
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
}

export interface RunReport {
  schema: typeof RESULT_SCHEMA_ID;
  startedAt: string;
  finishedAt: string;
  tool: { name: 'proxycheck'; version: string };
  proxies: ProxyInfo[];
  results: CheckResult[];
  summary: Record<Outcome, number> & { total: number; matched: number; unmatched: number };
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
