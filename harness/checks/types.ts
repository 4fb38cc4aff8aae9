/**
 * What a check is (after mockttp's matchers: data split from implementation, everything explains
 * itself). One module per check in this folder exports a CheckDefinition; `index.ts` lists them.
 */
import type { CheckResult, Outcome, ProxyRemediation } from '../model.ts';
import type { CatalogEndpoint } from '../scenarios.ts';

export interface Verdict {
  outcome: Outcome;
  message: string;
  evidence: Record<string, unknown>;
  durationMs: number;
  /** Overrides the check's generic remediation when the evidence allows a precise one. */
  remediation?: string;
  /**
   * The check does not apply to this endpoint by its catalog data (e.g. pinning on an endpoint no
   * agent pins): then `skip`, not `pass`, is what to expect when no expectation rule says otherwise.
   */
  notApplicable?: boolean;
  /**
   * The run did not observe enough to know (it did not wait long enough in real time): `skip`,
   * expected as such by default, never a pass.
   */
  notKnown?: boolean;
}

export interface CheckContext {
  host: string;
  port: number;
  proxyId: string;
  /** The exchange was forwarded as plain HTTP (absolute-form request), not tunnelled. */
  forwarded?: boolean;
}

/**
 * A dependency: a check id, or `{ anyOf }` — at least one of those (that the exchange reports) must
 * have passed or warned. The agent's route is such a group: it reached the host through the CONNECT
 * tunnel, a forwarded request, the failover port or the auto-detect fallback.
 */
export type Dependency = string | { anyOf: string[] };

export interface CheckDefinition {
  id: string;
  title: string;
  /**
   * Checks that must not have failed for this one to run. Only checks the exchange reports count.
   * The runner derives `dependency_fail` from this list (harness/runner/dependencies.ts).
   */
  dependsOn: Dependency[];
  /** What a failure of this check stops, as a dependent's "not run: …" reason. */
  blocks: string;
  explain(ctx: CheckContext): string;
  /** The remedy for one failed or warned result (a verdict may carry a more precise one). */
  remediation(ctx: CheckContext, verdict: Verdict): string;
  /**
   * The remedy hook: what this check's results on one proxy say must change there, added to the
   * proxy's remediation facts (harness/report/remediation.ts renders them per product).
   */
  collectRemedy?(results: CheckResult[], facts: RemedyFacts, env: RemedyEnv): void;
}

/** What a proxy must change, as facts the checks collect (rendered to text and squid.conf later). */
export type RemedyFacts = Omit<
  ProxyRemediation,
  'proxy' | 'product' | 'productEvidence' | 'productName' | 'settings' | 'squidConf' | 'text'
>;

export interface RemedyEnv {
  /** Catalog rows by `host:port` (lowercase), hosts resolved as the run resolved them. */
  rows: Map<string, CatalogEndpoint>;
}

/** Helpers the remedy hooks share. */
export const str = (v: unknown): string => (typeof v === 'string' ? v : '');
export const isConnectResult = (r: CheckResult): boolean =>
  r.check === 'connect' && str(r.evidence.request).startsWith('CONNECT ');

/** The agent's way to the host: any one of these that the exchange reports must have worked. */
export const ROUTE: Dependency = { anyOf: ['connect', 'forward', 'failover', 'fallback'] };

export function notRun(reason: string, dependsOn: string, durationMs = 0): Verdict {
  return { outcome: 'dependency_fail', message: `not run: ${reason}`, evidence: { dependsOn }, durationMs };
}

export function notApplicable(message: string): Verdict {
  return { outcome: 'skip', message, evidence: {}, durationMs: 0, notApplicable: true };
}

export const PROXY_CREDENTIALS_REMEDY =
  'Give the agent the proxy credentials (or exempt its hosts from proxy authentication); the proxy asked for them with 407.';
