/**
 * The one TLS judgement (checks `tls-interception` and `pinning`), parameterised by the agent's
 * trust policy: the lab (the lab root plays the web PKI; the origin's real key is known, so pins
 * are real) or live hosts (public roots plus --trust-ca; no pins are known, so a public chain is
 * what a pinned agent would accept). Used by the tunnelled channel, the auto-detect route and live
 * probes alike.
 */
import type { ChainCert, TlsResult } from '../agent/tls.ts';
import type { CatalogEndpoint } from '../scenarios.ts';
import { notApplicable, type Verdict } from './types.ts';

/** How an agent tells the origin's own certificate from a substitute. */
export interface TrustPolicy {
  /** PEM certificates the agent trusts. */
  ca: string[];
  /** SPKI pins of the origin's real key, where known (lab). */
  originPins?: string[];
  /** Evidence every TLS verdict carries (the trust store's name, say). */
  evidence?: Record<string, unknown>;
  /** Is this chain the origin's own? With a sentence naming its issuer when it is. */
  classify(chain: ChainCert[]): { origin: true; describe: string } | { origin: false; reSignedByCN: string };
  /** How the message names a substitute: `re-signed by "X", not "Y"` or `issued by "X", not a public CA`. */
  describeSubstitute(leaf: ChainCert, reSignedByCN: string, accepted: boolean, refused?: string): string;
  /**
   * Live probes have no dependent check that would show the agent refusing a certificate, so the
   * refusal fails `tls-interception` itself; in the lab the dependents show it (`dependency_fail`).
   */
  refusalFailsHere: boolean;
  /** Why `pinning` does not apply to an unpinned endpoint. */
  notPinned: string;
}

/** How the agent reached the host, when not through the proxy's tunnel (the auto-detect route). */
export interface AgentRoute {
  /** Inserted into messages, e.g. "on the direct route". */
  phrase: string;
  /** Names the route when nothing was in between, e.g. "direct route, auto detect". */
  label: string;
  evidence: Record<string, unknown>;
}

export interface TlsJudgement {
  interception: Verdict;
  /** Absent when the exchange does not report pinning. */
  pinning?: Verdict;
  leaf?: ChainCert;
  intercepted?: boolean;
  tlsEvidence: Record<string, unknown>;
}

export function judgeTls(
  tls: TlsResult,
  o: {
    policy: TrustPolicy;
    host: string;
    row: Pick<CatalogEndpoint, 'mustNotInspect' | 'pinned' | 'source'>;
    /** The agent pins this endpoint. */
    pinned: boolean;
    reportPinning: boolean;
    tlsMs: number;
    route?: AgentRoute;
  },
): TlsJudgement {
  const { policy, host, row, route } = o;
  const on = route ? ` ${route.phrase}` : '';
  const leaf = tls.chain[0];
  const tlsEvidence = {
    ...(route?.evidence ?? {}),
    handshakeMs: tls.handshakeMs,
    chain: tls.chain.map((c) => ({ subject: c.subjectCN, issuer: c.issuerCN, spkiSha256: c.spkiSha256 })),
    authorized: tls.authorized,
    ...(policy.evidence ?? {}),
    ...(tls.authorizationError ? { authorizationError: tls.authorizationError } : {}),
    ...(tls.nameMismatch ? { nameMismatch: tls.nameMismatch } : {}),
  };
  const notPinned = notApplicable(policy.notPinned);
  if (!leaf) {
    const msg = tls.error ?? 'no certificate presented';
    return {
      interception: {
        outcome: 'fail',
        message: `TLS ${route ? route.phrase : 'through the tunnel'} failed: ${msg}`,
        evidence: tlsEvidence,
        durationMs: o.tlsMs,
      },
      ...(o.reportPinning
        ? {
            pinning: o.pinned
              ? {
                  outcome: 'fail',
                  message: `pinned TLS session failed: ${msg}`,
                  evidence: tlsEvidence,
                  durationMs: 0,
                }
              : notPinned,
          }
        : {}),
      tlsEvidence,
    };
  }
  const accepted = tls.socket !== undefined;
  const kind = policy.classify(tls.chain);
  let interception: Verdict;
  if (kind.origin) {
    interception =
      accepted || !policy.refusalFailsHere
        ? {
            outcome: 'pass',
            message: route
              ? `no proxy in between (${route.label}): certificate for ${host} ${kind.describe}`
              : `certificate for ${host} ${kind.describe}`,
            evidence: tlsEvidence,
            durationMs: o.tlsMs,
          }
        : {
            outcome: 'fail',
            message: `certificate for ${host} ${kind.describe} but the agent refuses it: ${tls.refused}`,
            evidence: tlsEvidence,
            durationMs: o.tlsMs,
            remediation: `Not an interception: the origin's own certificate for ${host} is not accepted (${tls.refused}). Check the system clock and that nothing answers for ${host} in the origin's place.`,
          };
  } else {
    const what = `TLS intercepted${route ? `${on} (no proxy in between)` : ''}: certificate for ${host} ${policy.describeSubstitute(leaf, kind.reSignedByCN, accepted, tls.refused)}`;
    const failing = row.mustNotInspect || (policy.refusalFailsHere && !accepted);
    interception = {
      outcome: failing ? 'fail' : 'warn',
      message: row.mustNotInspect ? `${what}; the vendor says this host must not be inspected` : what,
      evidence: {
        ...tlsEvidence,
        reSignedBy: leaf.issuer,
        reSignedByCN: kind.reSignedByCN,
        agentTrusts: accepted,
        mustNotInspect: row.mustNotInspect,
        pinned: row.pinned,
        source: row.source,
      },
      durationMs: o.tlsMs,
      ...(policy.refusalFailsHere && !row.mustNotInspect && !accepted
        ? {
            remediation: `Either deploy the inspection CA "${kind.reSignedByCN}" to the agents' trust store (check with --trust-ca FILE) or exclude ${host} from TLS inspection.`,
          }
        : {}),
    };
  }
  const out: TlsJudgement = { interception, leaf, intercepted: !kind.origin, tlsEvidence };
  if (o.reportPinning)
    out.pinning = o.pinned ? judgePin(tls, leaf, kind.origin, policy, on, route) : notPinned;
  return out;
}

function judgePin(
  tls: TlsResult,
  leaf: ChainCert,
  origin: boolean,
  policy: TrustPolicy,
  on: string,
  route: AgentRoute | undefined,
): Verdict {
  const evidence = {
    ...(route?.evidence ?? {}),
    ...(policy.originPins ? { expectedSpki: policy.originPins } : {}),
    presentedSpki: leaf.spkiSha256,
  };
  // with known pins the agent compared keys; without, a chain to the origin's own root is all it can see
  const matched = policy.originPins ? tls.pinMatched === true : origin;
  if (matched) {
    return {
      outcome: 'pass',
      message: policy.originPins
        ? `presented key matches the pin (${leaf.spkiSha256})${on}`
        : `the key presented comes with the origin's own chain (issued by "${leaf.issuerCN}"), not a substitute`,
      evidence: policy.originPins ? evidence : { ...evidence, chain: tlsChain(tls) },
      durationMs: 0,
    };
  }
  return {
    outcome: 'fail',
    message: policy.originPins
      ? `pinned agent fails closed${on}: expected key ${policy.originPins[0]}, presented ${leaf.spkiSha256} (issued by "${leaf.issuerCN}")`
      : `pinned agent fails closed: the key was substituted (certificate issued by "${leaf.issuerCN}"); a pinned agent refuses it even from a trusted CA`,
    evidence: { ...evidence, presentedIssuer: leaf.issuer },
    durationMs: 0,
  };
}

function tlsChain(tls: TlsResult): Array<Record<string, string>> {
  return tls.chain.map((c) => ({ subject: c.subjectCN, issuer: c.issuerCN, spkiSha256: c.spkiSha256 }));
}

/** The lab's policy: the lab root plays the public web PKI, and the origin's real key is known. */
export function labTrustPolicy(o: {
  ca: string[];
  originIssuerCN: string;
  originPins: string[];
}): TrustPolicy {
  return {
    ca: o.ca,
    originPins: o.originPins,
    classify: (chain) => {
      const leaf = chain[0];
      return leaf && leaf.issuerCN === o.originIssuerCN && o.originPins.includes(leaf.spkiSha256)
        ? { origin: true, describe: `issued by "${leaf.issuerCN}", the origin's own` }
        : { origin: false, reSignedByCN: leaf?.issuerCN ?? 'unknown' };
    },
    describeSubstitute: (leaf) => `re-signed by "${leaf.issuerCN}", not "${o.originIssuerCN}"`,
    refusalFailsHere: false,
    notPinned: 'the agent does not pin this endpoint',
  };
}
