/**
 * Every check has an id, an explain() sentence and a remediation text; reports are built from
 * these, not from strings scattered in the runner (after mockttp's matchers).
 */
import type { Outcome } from '../model.ts';

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
}

export interface CheckContext {
  host: string;
  port: number;
  proxyId: string;
  /** The exchange was forwarded as plain HTTP (absolute-form request), not tunnelled. */
  forwarded?: boolean;
}

export interface CheckDefinition {
  id: string;
  title: string;
  /** Checks that must pass (or warn) for this one to run. */
  dependsOn: string[];
  explain(ctx: CheckContext): string;
  remediation(ctx: CheckContext, verdict: Verdict): string;
}

function connectRemediation(ctx: CheckContext, v: Verdict): string {
  const status = Number(v.evidence.statusCode ?? 0);
  if (status === 407) {
    return 'Give the agent the proxy credentials (or exempt its hosts from proxy authentication); the proxy asked for them with 407.';
  }
  if (status === 403) {
    return `Allow CONNECT to ${ctx.host} on port ${ctx.port}. In squid: add the port to the SSL_ports ACL (acl SSL_ports port ${ctx.port}) so "http_access deny CONNECT !SSL_ports" lets it through.`;
  }
  if (v.evidence.errorCode === 'ECONNREFUSED' || v.evidence.errorCode === 'PC_DEADLINE') {
    return 'The proxy could not be reached: check its address and port, and that the agent host may connect to it.';
  }
  return `Make the proxy tunnel CONNECT ${ctx.host}:${ctx.port} to the origin and answer "HTTP/1.1 200".`;
}

export const CHECKS: Record<string, CheckDefinition> = {
  connect: {
    id: 'connect',
    title: 'CONNECT tunnel',
    dependsOn: [],
    explain: (c) => `The proxy opens a CONNECT tunnel to ${c.host}:${c.port} and answers with a 2xx status.`,
    remediation: connectRemediation,
  },
  'tls-interception': {
    id: 'tls-interception',
    title: 'TLS not intercepted',
    dependsOn: ['connect'],
    explain: (c) =>
      `The certificate presented for ${c.host} through the tunnel is the origin's own, issued by the public root, not re-signed by an inspection CA.`,
    remediation: (c) =>
      `Exclude ${c.host} from TLS inspection (SSL bump / deep inspection): the vendor requires these hosts to reach the agent untouched. In squid: list it in an ssl::server_name ACL used by "ssl_bump splice".`,
  },
  pinning: {
    id: 'pinning',
    title: 'Pinned key accepted',
    dependsOn: ['connect'],
    explain: (c) =>
      `An agent that pins ${c.host}'s public key can complete its TLS session through the proxy (the presented key is the pinned one).`,
    remediation: (c) =>
      `A pinned agent refuses any substituted key, even one from a trusted corporate CA: bypass TLS inspection for ${c.host} (squid: "ssl_bump splice" for it).`,
  },
  payload: {
    id: 'payload',
    title: 'Payload intact',
    dependsOn: ['connect', 'tls-interception', 'pinning'],
    explain: (c) =>
      `Request and response bodies exchanged with ${c.host} arrive unchanged in both directions (SHA-256 compared).`,
    remediation: () =>
      'Something between the agent and the origin rewrites bodies: disable content rewriting, compression or scanning that alters payloads for these hosts.',
  },
  headers: {
    id: 'headers',
    title: 'Headers untouched in the tunnel',
    dependsOn: ['connect', 'tls-interception', 'pinning'],
    explain: (c) =>
      c.forwarded
        ? `Requests forwarded to ${c.host} keep their end-to-end headers; only hop-by-hop headers are removed, Via may be added, and Proxy-Authorization never reaches the origin.`
        : `Request heads sent inside the tunnel to ${c.host} arrive byte-identical at the origin.`,
    remediation: (c, v) =>
      v.evidence.leakedProxyAuthorization
        ? "The proxy forwards the agent's Proxy-Authorization header to the origin: it must consume it (credentials leak to a third party)."
        : c.forwarded
          ? `The proxy changes end-to-end headers of requests forwarded to ${c.host}: disable header rewriting for this host (squid: request_header_access / request_header_replace rules).`
          : 'Something inside the tunnel rewrites request headers; a CONNECT tunnel must carry bytes untouched. Disable header rewriting and TLS inspection for these hosts.',
  },
  forward: {
    id: 'forward',
    title: 'Plain HTTP forwarded',
    dependsOn: [],
    explain: (c) =>
      `The proxy forwards the agent's plain-HTTP request for ${c.host}:${c.port} (absolute-form) to the origin and relays the origin's answer.`,
    remediation: (c, v) => {
      const status = Number(v.evidence.statusCode ?? 0);
      if (status === 407)
        return 'Give the agent the proxy credentials (or exempt its hosts from proxy authentication); the proxy asked for them with 407.';
      if (status === 403)
        return `Allow plain HTTP to ${c.host} on port ${c.port} (squid: an "http_access allow" rule for it, above the final deny; port ${c.port} must be in Safe_ports).`;
      return `Make the proxy forward plain HTTP to ${c.host}:${c.port} and relay the origin's answer unchanged.`;
    },
  },
  'connect-response': {
    id: 'connect-response',
    title: 'Strict CONNECT answer',
    dependsOn: ['connect'],
    explain: (c) =>
      `The answer to CONNECT ${c.host}:${c.port} is exactly what strict firmware (Intel AMT doing CIRA) accepts: "HTTP/1.1 200", no header lines, no body, nothing glued after the blank line.`,
    remediation: (c) =>
      `Make the proxy answer CONNECT to ${c.host}:${c.port} with a bare "HTTP/1.1 200 Connection established" and an empty line (squid does this by default); turn off added headers (Proxy-Agent, Via, Connection) or HTTP/1.0 answers for CONNECT, and never send bytes before the client speaks.`,
  },
  mtls: {
    id: 'mtls',
    title: 'Device certificate reaches the origin',
    dependsOn: ['connect'],
    explain: (c) =>
      `Mutual TLS with ${c.host} completes end to end: the origin verifies the device certificate the agent presents.`,
    remediation: (c, v) =>
      v.evidence.reSignedBy || v.evidence.interceptedBy
        ? `An intercepting proxy terminates TLS and cannot present the device's certificate to ${c.host}: exclude it from inspection (squid: an ssl::server_name ACL for ${c.host} used by "ssl_bump splice").`
        : `Let the TLS session to ${c.host}:${c.port} pass through untouched so the origin can verify the device certificate.`,
  },
  'tunnel-keepalive': {
    id: 'tunnel-keepalive',
    title: 'Long-lived tunnel stays up',
    dependsOn: ['connect'],
    explain: (c) =>
      `A long-lived tunnel to ${c.host}:${c.port} stays open for the whole session and every keep-alive is answered.`,
    remediation: (c, v) => {
      const need = Number(v.evidence.requiredSeconds ?? 0);
      return `The proxy closed the tunnel to ${c.host}:${c.port} early: raise its idle/read timeout for CONNECT tunnels above the agent's keep-alive interval and allow sessions of at least ${need || 'the documented'} s (squid: read_timeout and client_lifetime).`;
    },
  },
  protocol: {
    id: 'protocol',
    title: 'Application protocol completes',
    dependsOn: ['connect'],
    explain: (c) =>
      `The agent's application protocol to ${c.host}:${c.port} completes inside the tunnel (WebSocket upgrade, MQTT CONNACK, AMQP header exchange, as the agent speaks it).`,
    remediation: (c) =>
      `Something between the agent and ${c.host} breaks the protocol handshake: allow WebSocket upgrades and do not inspect or rewrite this tunnel.`,
  },
  failover: {
    id: 'failover',
    title: 'Failover port works',
    dependsOn: [],
    explain: (c) =>
      `When the primary port is not reachable through the proxy, the agent fails over to ${c.host}:${c.port}, as the vendor documents, and reaches the service.`,
    remediation: (c) =>
      `Allow CONNECT to ${c.host}:${c.port} (the documented failover port) or to the primary port (squid: acl SSL_ports port ${c.port}).`,
  },
  fallback: {
    id: 'fallback',
    title: 'Falls back to auto-detect',
    dependsOn: [],
    explain: (c) =>
      `When the configured proxy cannot be reached, the agent falls back to "auto detect" (the user's own route) and still reaches ${c.host}:${c.port}.`,
    remediation: (c) =>
      `The configured proxy is unreachable and the fallback route to ${c.host}:${c.port} failed too: fix the proxy address in the agent's settings, or let the machine reach ${c.host} directly.`,
  },
};

/** Report order of every check (a kind reports a subset). */
export const CHECK_ORDER = [
  'connect',
  'forward',
  'connect-response',
  'failover',
  'fallback',
  'tls-interception',
  'pinning',
  'mtls',
  'protocol',
  'payload',
  'headers',
  'tunnel-keepalive',
] as const;

export function checkDefinition(id: string): CheckDefinition {
  const def = CHECKS[id];
  if (!def) throw new Error(`unknown check ${id}`);
  return def;
}
