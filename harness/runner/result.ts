/** One way from a verdict to a result, and from results to a report, for every kind of run. */
import type { KindVerdict } from '../agent/kinds/types.ts';
import { type CheckContext, checkDefinition } from '../checks/index.ts';
import { type CheckResult, type ProxyInfo, RESULT_SCHEMA_ID, type RunReport, summarize } from '../model.ts';
import { type DeviationWatch, expectedOutcome } from '../proxies/expectations.ts';
import type { OracleEnv } from '../proxies/oracle.ts';
import type { CatalogEndpoint, ProfileExchange, ScenarioSet } from '../scenarios.ts';
import { VERSION } from '../util/pkg.ts';

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

export interface ResultKey {
  proxy: string;
  profile: string;
  endpoint: string;
  check: string;
  kind: string;
  row: CatalogEndpoint;
  ctx: CheckContext;
  /** The exchange the result is of: what the oracle predicts from. */
  exchange: ProfileExchange;
}

/** What toResult needs of the run to know what to expect. */
export interface Expecting {
  env: OracleEnv;
  watch: DeviationWatch;
}

/** A verdict with its expectation (the proxy's definition and the oracle), explanation and remedy. */
export function toResult(set: ScenarioSet, k: ResultKey, v: KindVerdict, expecting: Expecting): CheckResult {
  const def = checkDefinition(k.check);
  const fallback = v.notApplicable || v.notKnown ? 'skip' : 'pass';
  const key = {
    proxy: k.proxy,
    profile: k.profile,
    endpoint: k.endpoint,
    check: k.check,
    port: k.ctx.port,
    kind: k.kind,
    mustNotInspect: k.row.mustNotInspect,
    pinned: k.row.pinned,
    host: k.ctx.host,
  };
  const exp = expectedOutcome(
    set,
    { ...key, exchange: k.exchange },
    expecting.env,
    fallback,
    v.outcome,
    expecting.watch,
  );
  const needsRemedy = v.outcome === 'fail' || v.outcome === 'warn';
  return {
    id: `${k.proxy}/${k.profile}/${k.endpoint}/${k.check}`,
    proxy: k.proxy,
    profile: k.profile,
    endpoint: k.endpoint,
    check: k.check,
    outcome: v.outcome,
    expected: exp.expect,
    ...(exp.reason ? { expectedReason: exp.reason } : {}),
    matched: v.outcome === exp.expect,
    message: v.message,
    evidence: { explain: def.explain(k.ctx), ...v.evidence },
    remediation: needsRemedy ? (v.remediation ?? def.remediation(k.ctx, v)) : '',
    durationMs: v.durationMs,
  };
}

export function assembleReport(startedAt: string, proxies: ProxyInfo[], results: CheckResult[]): RunReport {
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
