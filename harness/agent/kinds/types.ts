/**
 * An exchange kind is one way an agent talks to an endpoint (HTTPS requests, a WebSocket session,
 * MQTT, a CIRA tunnel, ...). Each kind says which checks it reports, what the lab origin must
 * serve for it, and how to replay it through a proxy. The runner knows nothing else about them.
 */
import type { Verdict } from '../../checks/definitions.ts';
import type { LabPortSpec } from '../../lab/lab.ts';
import type { CatalogEndpoint, ExchangeKindId, ProfileExchange } from '../../scenarios.ts';
import type { ProxyAddress } from '../tunnel.ts';

export interface Timeouts {
  connectMs: number;
  answerMs: number;
  tlsMs: number;
  requestMs: number;
}

export interface KindContext {
  proxy: ProxyAddress;
  /** Resolved host (tenant and parameters replaced). */
  host: string;
  port: number;
  row: CatalogEndpoint;
  /** Catalog row of another port of the same host (the failover port, say). */
  rowFor(port: number): CatalogEndpoint | undefined;
  exchange: ProfileExchange;
  /** The agent's trust store (PEM): the lab root, plus the corporate CA if the enterprise deployed it. */
  trust: string[];
  /** Subject CN of the issuer the origin's certificate really has. */
  originIssuerCN: string;
  /** base64 SHA-256 SPKI of the origin's real key: what a pinned agent pins. */
  originPins: string[];
  /** The device certificate an agent presents for mutual TLS (issued by the lab device CA). */
  clientCert: { certPem: string; keyPem: string; subjectCN: string };
  timeouts: Timeouts;
  /** Multiplies every duration in the profile (1 = real time). */
  timeScale: number;
  /** Overrides the session length of long-lived tunnels, in real seconds (validate --idle-seconds). */
  idleSeconds?: number;
  /**
   * The "auto detect" route an agent falls back to when its proxy is unreachable: the address the
   * agent's own network resolves the host to (in the lab, the loopback origin).
   */
  directAddress(host: string): string | undefined;
}

/** A verdict may name another endpoint of the exchange (a failover port, say). */
export type KindVerdict = Verdict & { endpoint?: string };
export type KindVerdicts = Map<string, KindVerdict>;

export interface ExchangeKind {
  id: ExchangeKindId;
  /** The checks this kind reports for an exchange, in report order. */
  checks(x: ProfileExchange): string[];
  /** What the lab origin must serve on each port this exchange reaches. */
  lab(x: ProfileExchange, row: CatalogEndpoint): LabPortSpec[];
  run(ctx: KindContext): Promise<KindVerdicts>;
}

export const since = (t0: number): number => Math.round(performance.now() - t0);

export function notRun(reason: string, dependsOn: string, durationMs = 0): Verdict {
  return { outcome: 'dependency_fail', message: `not run: ${reason}`, evidence: { dependsOn }, durationMs };
}

export function notApplicable(message: string): Verdict {
  return { outcome: 'skip', message, evidence: {}, durationMs: 0, notApplicable: true };
}

/** Marks every check in `checks` not yet judged as not run because of `by`. */
export function fillNotRun(out: KindVerdicts, checks: string[], reason: string, by: string): void {
  for (const c of checks) if (!out.has(c)) out.set(c, notRun(reason, by));
}

/** Scaled milliseconds for a profile duration in seconds. */
export function scaledMs(seconds: number, timeScale: number): number {
  return Math.max(1, Math.round(seconds * 1000 * timeScale));
}
