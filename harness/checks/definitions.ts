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
    explain: (c) => `Request heads sent inside the tunnel to ${c.host} arrive byte-identical at the origin.`,
    remediation: () =>
      'Something inside the tunnel rewrites request headers; a CONNECT tunnel must carry bytes untouched. Disable header rewriting and TLS inspection for these hosts.',
  },
};

export const CHECK_ORDER = ['connect', 'tls-interception', 'pinning', 'payload', 'headers'] as const;

export function checkDefinition(id: string): CheckDefinition {
  const def = CHECKS[id];
  if (!def) throw new Error(`unknown check ${id}`);
  return def;
}
