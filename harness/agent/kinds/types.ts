/**
 * An exchange kind is one way an agent talks to an endpoint (HTTPS requests, a WebSocket session,
 * MQTT, a CIRA tunnel, ...). Each kind says which checks it reports, what the lab origin must
 * serve for it, and how to replay it through a proxy. The runner knows nothing else about them.
 */
import type { TrustPolicy } from '../../checks/tls-judgement.ts';
import type { TunnelNeeds } from '../../checks/tunnel-keepalive.ts';
import type { Verdict } from '../../checks/types.ts';
import type { LabPortSpec } from '../../lab/lab.ts';
import type { ClientNetwork } from '../../route/client-network.ts';
import type { Route } from '../../route/route.ts';
import type { CatalogEndpoint, ProfileExchange } from '../../scenarios.ts';

export interface Timeouts {
  connectMs: number;
  answerMs: number;
  tlsMs: number;
  requestMs: number;
}

export interface KindContext {
  /** The agent's way out: through the proxy, or the auto-detect route (harness/route/). */
  route: Route;
  /** Resolved host (tenant and parameters replaced). */
  host: string;
  port: number;
  row: CatalogEndpoint;
  /** Catalog row of another port of the same host (the failover port, say). */
  rowFor(port: number): CatalogEndpoint | undefined;
  exchange: ProfileExchange;
  /**
   * How the agent tells the origin's certificate from a substitute: its trust store (the lab root,
   * plus the corporate CA if the enterprise deployed it) and, in the lab, the origin's real key.
   */
  trust: TrustPolicy;
  /**
   * How to recognise the origin's answers behind a proxy (the lab's id header), so a 2xx to
   * CONNECT can be checked against what really answered; absent for live hosts.
   */
  reachMarker?: { labId: string; labHeader: string };
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
  /** The agent machine's network (its names, auto detect, DIRECT); default: the lab's names, no auto detect, DIRECT allowed. */
  client?: ClientNetwork;
}

/** A verdict may name another endpoint of the exchange (a failover port, say). */
export type KindVerdict = Verdict & { endpoint?: string };
export type KindVerdicts = Map<string, KindVerdict>;

export interface ExchangeKind {
  id: string;
  /**
   * JSON-schema properties of the exchange options this kind takes, besides the common ones
   * (catalog, host, port, name, kind, userAgent, instances): an option not listed is a scenario error.
   */
  options: Record<string, object>;
  /** Options the exchange must give. */
  required?: string[];
  /** The checks this kind reports for an exchange, in report order (route policies add theirs). */
  checks(x: ProfileExchange): string[];
  /** What the lab origin must serve on a port this exchange reaches. */
  lab(x: ProfileExchange, row: CatalogEndpoint): LabPortSpec[];
  /**
   * For kinds that hold long-lived tunnels (they report `tunnel-keepalive`): the agent's longest
   * silence between keep-alives and its session length, in real seconds, from the profile. The
   * proxy's timers are measured against them in real time (harness/route/timers.ts); the kind's
   * session must honour `ctx.idleSeconds` as its length and `ctx.timeScale` for its cadence.
   */
  tunnelNeeds?(x: ProfileExchange): TunnelNeeds;
  /** Plain HTTP forwarded by the proxy (absolute form), not tunnelled: checks phrase themselves so. */
  forwarded?: boolean;
  /**
   * The agent pins the origin's key on pinned and must-not-inspect rows (default true); CIRA
   * firmware does not, it checks the chain only.
   */
  pinsOrigin?: boolean;
  /**
   * Replays the exchange and judges what the agent saw. A check the kind could not get to is left
   * out, or marked notRun() with the reason when no failed check explains it; the runner derives
   * `dependency_fail` from each check's dependsOn (harness/runner/dependencies.ts).
   */
  run(ctx: KindContext): Promise<KindVerdicts>;
}

export const since = (t0: number): number => Math.round(performance.now() - t0);

export { notApplicable, notRun } from '../../checks/types.ts';

/** Scaled milliseconds for a profile duration in seconds. */
export function scaledMs(seconds: number, timeScale: number): number {
  return Math.max(1, Math.round(seconds * 1000 * timeScale));
}
