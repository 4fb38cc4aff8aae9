/**
 * Findings by root cause and a verdict per agent, from a report's results and its remediation.
 *
 * Every `fail` or `warn` result belongs to one cause on its proxy: a cause the remediation facts
 * name (CONNECT ports refused, a leaked Proxy-Authorization, a CONNECT answer too loose for a strict
 * client, ...) or, for anything else, `check:<id>` with the check's own remedy, so every check that
 * can fail feeds a finding. A finding's remedy is the remediation restricted to its cause: the
 * product-neutral sentences and the product's settings for those facts only.
 *
 * Agent verdict (per profile and proxy), the rule documented in docs/reports.md:
 *   no-go   — a `fail` of the agent's own exchanges (a blocker finding);
 *   at risk — no blocker, but a security or degraded finding (a warn, a leaked credential), or some
 *             of its checks did not run for a reason of ours (setup_fail, harness_fail), or nothing
 *             was observed, or its only failures are connect/forward to an unreachable proxy while
 *             its auto-detect fallback passed for the same endpoint;
 *   go      — every check that ran for it passed (skips that do not apply are not failures).
 */
import { CHECKS } from '../checks/index.ts';
import {
  AGENTS_SCHEMA_ID,
  type AgentsBlock,
  type AgentVerdict,
  type CheckResult,
  type Finding,
  type FindingSeverity,
  type ProductFingerprint,
  type ProxyRemediation,
  parseEndpoint,
  type RunReport,
} from '../model.ts';
import type { ScenarioSet } from '../scenarios.ts';
import { fingerprint } from './fingerprint.ts';
import { productRemedy } from './products/index.ts';
import { genericText, list } from './remediation.ts';

type FactKey = keyof ProxyRemediation;

/** The remediation facts each cause owns (a finding's remedy is the remediation of these alone). */
export const CAUSE_FACTS: Record<string, FactKey[]> = {
  'connect-port': ['connectPorts', 'bumpedPorts'],
  'connect-host': ['refusedEndpoints'],
  'http-refused': ['httpRefused'],
  inspection: ['noInspect', 'untrustedInspection'],
  'non-tls': ['nonTls'],
  credentials: ['credentials'],
  'auth-scheme': ['authSchemes'],
  'proxy-auth-leak': ['leakedProxyAuthorization'],
  'strict-connect': ['strictConnect'],
  'tunnel-timers': ['idleSeconds', 'lifetimeSeconds', 'idleInspectedSeconds'],
};

const ALL_FACTS: FactKey[] = Object.values(CAUSE_FACTS).flat();

/** `rem` with only the facts of `cause` (empty lists and no timers for the others). */
export function restrict(rem: ProxyRemediation, cause: string): ProxyRemediation {
  const keep = new Set(CAUSE_FACTS[cause] ?? []);
  const out = { ...rem, squidConf: [], text: [] } as ProxyRemediation;
  delete out.settings;
  const mutable = out as unknown as Record<string, unknown>;
  for (const k of ALL_FACTS) {
    if (keep.has(k)) continue;
    if (['connectPorts', 'refusedEndpoints', 'noInspect', 'untrustedInspection', 'credentials'].includes(k))
      mutable[k] = [];
    else delete mutable[k];
  }
  return out;
}

/** The remedy of one cause: its sentences, the product's notes and settings for its facts. */
export function causeRemedy(
  rem: ProxyRemediation,
  cause: string,
  fp: ProductFingerprint,
): { remedy: string[]; settings: Finding['settings'] } {
  const only = restrict(rem, cause);
  const module = productRemedy(fp.id);
  const remedy = [...genericText(only), ...(module?.notes?.(only, fp) ?? [])];
  const settings = module?.settings(only, fp) ?? [];
  return { remedy, settings: settings.length ? settings : undefined };
}

const hostOf = (endpoint: string) => parseEndpoint(endpoint).host;
const status = (r: CheckResult) => Number(r.evidence.insideStatusCode ?? r.evidence.statusCode ?? 0);

/** The cause a failed or warned result belongs to. */
export function causeOf(r: CheckResult, rem: ProxyRemediation | undefined): string {
  const own = `check:${r.check}`;
  if (!rem) return own;
  const host = hostOf(r.endpoint);
  const inspected = () =>
    (rem.nonTls ?? []).some((e) => hostOf(e) === host)
      ? 'non-tls'
      : rem.noInspect.some((n) => n.host === host) || rem.untrustedInspection.some((n) => n.host === host)
        ? 'inspection'
        : own;
  switch (r.check) {
    case 'connect':
      if (status(r) === 403)
        return rem.connectPorts.some((p) => p.endpoints.includes(r.endpoint))
          ? 'connect-port'
          : rem.refusedEndpoints.includes(r.endpoint)
            ? 'connect-host'
            : own;
      if (status(r) === 407)
        return rem.authSchemes?.some((a) => a.endpoint === r.endpoint)
          ? 'auth-scheme'
          : rem.credentials.includes(r.endpoint)
            ? 'credentials'
            : own;
      return own;
    case 'forward':
      return rem.httpRefused?.includes(r.endpoint) ? 'http-refused' : own;
    case 'failover':
    case 'fallback':
    case 'tls-interception':
    case 'pinning':
    case 'mtls':
    case 'protocol':
    case 'payload':
      return inspected();
    case 'headers':
      return r.evidence.leakedProxyAuthorization === true &&
        rem.leakedProxyAuthorization?.includes(r.endpoint)
        ? 'proxy-auth-leak'
        : own;
    case 'connect-response':
      return rem.strictConnect?.some((s) => s.endpoint === r.endpoint) ? 'strict-connect' : own;
    case 'tunnel-keepalive':
      return rem.idleSeconds !== undefined ||
        rem.lifetimeSeconds !== undefined ||
        rem.idleInspectedSeconds !== undefined
        ? 'tunnel-timers'
        : own;
    default:
      return own;
  }
}

/** `13000, 13291-13293, 14000`: consecutive ports as a range. */
export function portRanges(ports: number[]): string {
  const out: string[] = [];
  for (let i = 0; i < ports.length; ) {
    let j = i;
    while (j + 1 < ports.length && ports[j + 1] === (ports[j] ?? 0) + 1) j += 1;
    out.push(j - i >= 2 ? `${ports[i]}-${ports[j]}` : ports.slice(i, j + 1).join(', '));
    i = j + 1;
  }
  return out.join(', ');
}

function severityOf(cause: string, results: CheckResult[]): FindingSeverity {
  if (cause === 'proxy-auth-leak') return 'security';
  return results.some((r) => r.outcome === 'fail') ? 'blocker' : 'degraded';
}

function what(cause: string, rem: ProxyRemediation | undefined, results: CheckResult[]): string {
  const endpoints = [...new Set(results.map((r) => r.endpoint))];
  switch (cause) {
    case 'connect-port': {
      const ports = [...new Set(results.map((r) => parseEndpoint(r.endpoint).port))].sort((a, b) => a - b);
      return `CONNECT refused to port${ports.length > 1 ? 's' : ''} ${portRanges(ports)}`;
    }
    case 'connect-host':
      return `CONNECT refused to ${list(endpoints, 4)} (a host rule)`;
    case 'http-refused':
      return `plain HTTP refused to ${list(endpoints, 4)}`;
    case 'inspection':
      return `TLS inspected on ${list([...new Set(endpoints.map(hostOf))], 4)}, which must not be`;
    case 'non-tls':
      return `tunnels to ${list(endpoints, 4)} broken when the agent spoke its own protocol`;
    case 'credentials':
      return 'the proxy asks for credentials (407) the agents were not given';
    case 'auth-scheme': {
      const a = rem?.authSchemes ?? [];
      return `the proxy asks for ${[...new Set(a.flatMap((x) => x.offered))].join(', ')}; the agents speak ${[...new Set(a.map((x) => x.sent))].join(', ')}`;
    }
    case 'proxy-auth-leak':
      return `Proxy-Authorization forwarded to the origin of ${list(endpoints, 4)} (the proxy credentials leak)`;
    case 'strict-connect':
      return `CONNECT answer too loose for a strict client (vPro CIRA): ${rem?.strictConnect?.[0]?.problems[0] ?? 'rejected'}`;
    case 'tunnel-timers':
      return 'long-lived tunnels cut short by a proxy timer';
    default: {
      const id = cause.replace(/^check:/, '');
      return `${CHECKS[id]?.title ?? id}: ${results[0]?.message ?? 'failed'}`;
    }
  }
}

function consequence(severity: FindingSeverity, names: string[]): string {
  const who = names.length ? list(names, 3) : 'no agent';
  if (severity === 'security') return `${who} expose${names.length === 1 ? 's' : ''} credentials`;
  if (severity === 'degraded') return `${who} may misbehave`;
  return `${who} cannot work through this proxy`;
}

export interface FindingsOptions {
  scenarios?: ScenarioSet;
}

function titles(set: ScenarioSet | undefined): (profile: string) => string {
  return (id) => set?.profiles.get(id)?.title ?? id;
}

/** Findings for every proxy of the report (report.remediation must be built already). */
export function buildFindings(report: RunReport, opts: FindingsOptions = {}): Finding[] {
  const title = titles(opts.scenarios);
  const out: Finding[] = [];
  for (const proxy of report.proxies) {
    const rem = report.remediation?.find((r) => r.proxy === proxy.id);
    const fp =
      proxy.product ??
      fingerprint(
        proxy,
        report.results.filter((r) => r.proxy === proxy.id),
      );
    const byCause = new Map<string, CheckResult[]>();
    for (const r of report.results) {
      if (r.proxy !== proxy.id || (r.outcome !== 'fail' && r.outcome !== 'warn')) continue;
      const cause = causeOf(r, rem);
      byCause.set(cause, [...(byCause.get(cause) ?? []), r]);
    }
    for (const [cause, results] of byCause) {
      const severity = severityOf(cause, results);
      const agents = [...new Set(results.map((r) => r.profile))];
      const fromFacts = rem && CAUSE_FACTS[cause] ? causeRemedy(rem, cause, fp) : undefined;
      const remedy = fromFacts?.remedy.length
        ? fromFacts.remedy
        : [...new Set(results.map((r) => r.remediation).filter(Boolean))].slice(0, 3);
      out.push({
        id: `${proxy.id}/${cause}`,
        proxy: proxy.id,
        cause,
        severity,
        title: `${what(cause, rem, results)}: ${consequence(severity, agents.map(title))}`,
        agents,
        evidence: results.slice(0, 20).map((r) => r.id),
        results: results.length,
        remedy,
        ...(fromFacts?.settings ? { settings: fromFacts.settings } : {}),
      });
    }
  }
  const rank: Record<FindingSeverity, number> = { blocker: 0, security: 1, degraded: 2 };
  return out.sort((a, b) => rank[a.severity] - rank[b.severity] || a.id.localeCompare(b.id));
}

export const AGENT_RULE =
  'no-go: a check of the agent failed (a blocker); at risk: no blocker, but a security or degraded finding, or checks that did not run for a reason of ours, or the proxy unreachable with the agent working through its auto-detect fallback; go: everything that ran for it passed';

/** A verdict per agent (profile) and proxy. */
export function buildAgentVerdicts(
  report: RunReport,
  findings: Finding[],
  opts: FindingsOptions = {},
): AgentsBlock {
  const title = titles(opts.scenarios);
  const verdicts: AgentVerdict[] = [];
  for (const proxy of report.proxies) {
    const profiles = [...new Set(report.results.filter((r) => r.proxy === proxy.id).map((r) => r.profile))];
    for (const agent of profiles) {
      const rs = report.results.filter((r) => r.proxy === proxy.id && r.profile === agent);
      const mine = findings.filter((f) => f.proxy === proxy.id && f.agents.includes(agent));
      const blockers = mine.filter((f) => f.severity === 'blocker');
      const notRun = rs.filter((r) => r.outcome === 'setup_fail' || r.outcome === 'harness_fail');
      const passed = rs.filter((r) => r.outcome === 'pass').length;
      const more = (n: number) => (n > 1 ? ` (+${n - 1} more)` : '');
      // the first finding in the agent's own words: its ports, its hosts
      const rem = report.remediation?.find((r) => r.proxy === proxy.id);
      const first = (fs: Finding[]) => {
        const f = fs[0];
        if (!f) return '';
        const own = rs.filter(
          (r) => (r.outcome === 'fail' || r.outcome === 'warn') && causeOf(r, rem) === f.cause,
        );
        return `${what(f.cause, rem, own)}${more(fs.length)}`;
      };
      // A fail-open agent whose proxy is unreachable but whose fallback (auto detect) worked is not
      // blocked: it works, on a route the customer did not plan for.
      const recovered = new Set(
        rs.filter((r) => r.check === 'fallback' && r.outcome === 'pass').map((r) => r.endpoint),
      );
      const fails = rs.filter((r) => r.outcome === 'fail');
      const onlyFellBack =
        fails.length > 0 &&
        fails.every((r) => (r.check === 'connect' || r.check === 'forward') && recovered.has(r.endpoint));
      let verdict: AgentVerdict['verdict'];
      let reason: string;
      if (onlyFellBack) {
        verdict = 'at-risk';
        reason = `the proxy is not reachable (${fails[0]?.message}); it falls back through auto detect and works on that route (fallback passed for ${[...recovered].join(', ')})`;
      } else if (blockers.length) {
        verdict = 'no-go';
        reason = first(blockers);
      } else if (mine.length) {
        verdict = 'at-risk';
        reason = first(mine);
      } else if (notRun.length) {
        verdict = 'at-risk';
        reason = `${notRun.length} check(s) did not run (${notRun[0]?.outcome}: ${notRun[0]?.message}), so it is not known`;
      } else if (!passed) {
        verdict = 'at-risk';
        reason = 'no check ran for it, so nothing was observed';
      } else {
        verdict = 'go';
        reason = `all ${passed} checks that ran passed`;
      }
      verdicts.push({
        agent,
        title: title(agent),
        proxy: proxy.id,
        verdict,
        reason,
        findings: mine.map((f) => f.id),
      });
    }
  }
  return { schema: AGENTS_SCHEMA_ID, rule: AGENT_RULE, verdicts };
}

/** Adds `findings` and `agents` (report.remediation must be built already). */
export function withFindings(report: RunReport, opts: FindingsOptions = {}): RunReport {
  const findings = buildFindings(report, opts);
  report.findings = findings;
  report.agents = buildAgentVerdicts(report, findings, opts);
  return report;
}
