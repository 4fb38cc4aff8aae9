/**
 * `proxy-auth`: the agent authenticated to a proxy that asks for credentials, on one kept-alive
 * connection. Reported on every tunnelled exchange whose route has credentials (the agent is
 * configured for an authenticating proxy). Judged from the dance the CONNECT client recorded
 * (harness/agent/tunnel.ts: schemes offered, the scheme used, the rounds, whether the connection
 * held); tokens and secrets never reach the evidence (harness/route/auth.ts redacts them).
 *
 * Failures, each with its remedy: the proxy offers no scheme the agent can do; the proxy closed
 * the connection between rounds (NTLM and Negotiate are bound to one connection); the agent's
 * credentials or principal were rejected (a 407 after its final answer); 407 forever (the proxy
 * keeps challenging past the rounds any scheme needs).
 */
import type { AuthDance, TunnelResult } from '../agent/tunnel.ts';
import type { CheckResult } from '../model.ts';
import { MAX_AUTH_ROUNDS } from '../route/auth.ts';
import { type CheckDefinition, notApplicable, str, type Verdict } from './types.ts';

export type AuthProblem = 'cannot' | 'closed' | 'rejected' | 'forever';

const FIX: Record<AuthProblem, (e: Record<string, unknown>) => string> = {
  cannot: (e) =>
    `The proxy asks for a scheme the agent cannot do (${str(e.agentCannot)}): offer the agent's scheme on the proxy as well (squid: one auth_param block per scheme; it offers them all in its 407), or configure the agent for one the proxy offers.`,
  closed: (e) =>
    `Keep the agent's connection open through the authentication rounds (${str(e.closedBetweenRounds)}): NTLM and Negotiate are bound to one connection, so a proxy, load balancer or TLS terminator that closes it or answers the 407 with "Connection: close" breaks the handshake every time (squid: auth_param ntlm|negotiate keep_alive on, and no client_persistent_connections off).`,
  rejected: (e) =>
    `The proxy rejected the agent's ${str(e.used) || 'proxy'} credentials: check the account the agent is configured with${/negotiate/i.test(str(e.used)) ? " (Negotiate: the agent's principal must be in a realm the proxy trusts, the proxy's keytab must hold HTTP/<the host in the agent's proxy URL>, readable by the proxy's user, and both clocks within 5 minutes)" : /digest/i.test(str(e.used)) ? ' (Digest: user and password in the realm the proxy names)' : ''}. Opening the proxy to unauthenticated clients is not the fix.`,
  forever: (e) =>
    `The proxy answers 407 round after round (${e.rounds} rounds, scheme ${str(e.used)}): no answer satisfies it. Check its authentication helper (a helper that fails or cannot reach its directory makes squid challenge again and again) and that its nonce or ticket settings are sane.`,
};

function describe(d: AuthDance): string {
  const offered = d.offered.length ? `offered ${d.offered.join(', ')}` : 'no challenge';
  const kept = d.closedBetweenRounds ? 'the connection was not kept' : 'on one connection';
  return `${offered}; ${d.used ? `the agent used ${d.used}` : 'the agent answered nothing'}, ${d.rounds} round(s) ${kept}`;
}

/** The `proxy-auth` verdict for one CONNECT on a route with credentials. */
export function judgeProxyAuth(target: string, tunnel: TunnelResult, durationMs: number): Verdict {
  const d = tunnel.auth;
  if (!d) return { ...notApplicable('the agent has no proxy credentials on this route'), durationMs };
  const evidence: Record<string, unknown> = {
    ...d,
    ...(tunnel.authRounds ? { authRounds: tunnel.authRounds } : {}),
  };
  const status = tunnel.answer?.statusCode;
  const fail = (problem: AuthProblem, message: string): Verdict => ({
    outcome: 'fail',
    message,
    evidence: { ...evidence, problem },
    durationMs,
    remediation: FIX[problem](evidence),
  });
  if (tunnel.ok) {
    return {
      outcome: 'pass',
      message: `CONNECT ${target}: authenticated with ${d.used ?? 'no scheme'} (${describe(d)})`,
      evidence,
      durationMs,
    };
  }
  if (d.closedBetweenRounds)
    return fail(
      'closed',
      `CONNECT ${target}: ${d.closedBetweenRounds}, so the ${d.used ?? 'authentication'} handshake could not go on (${describe(d)})`,
    );
  if (status === 407 && d.agentCannot)
    return fail('cannot', `CONNECT ${target}: 407 the agent cannot answer: ${d.agentCannot}`);
  if (status === 407 && d.rounds >= MAX_AUTH_ROUNDS)
    return fail(
      'forever',
      `CONNECT ${target}: 407 after ${d.rounds} rounds of ${d.used}: the proxy challenges forever (${describe(d)})`,
    );
  if (status === 407 && d.used)
    return fail(
      'rejected',
      `CONNECT ${target}: 407 after the agent's ${d.used} answer: the proxy rejected its ${/negotiate/i.test(d.used) ? 'Kerberos principal' : 'credentials'} (${describe(d)})`,
    );
  if (status === 407)
    return fail(
      'cannot',
      `CONNECT ${target}: 407 without any challenge the agent could answer (${describe(d)})`,
    );
  return {
    ...notApplicable(
      `CONNECT ${target} ended before the proxy decided on credentials (${tunnel.answer ? `"${tunnel.answer.statusLine}"` : tunnel.error})`,
    ),
    evidence,
    durationMs,
  };
}

export const proxyAuth: CheckDefinition = {
  id: 'proxy-auth',
  title: 'Proxy authentication',
  dependsOn: [],
  blocks: 'the agent could not authenticate to the proxy',
  explain: (c) =>
    `The agent authenticates to the proxy for CONNECT ${c.host}:${c.port} with a scheme the proxy offers, every round on one kept-alive connection, and the proxy accepts it.`,
  remediation(_ctx, v) {
    const problem = v.evidence.problem as AuthProblem | undefined;
    return problem ? FIX[problem](v.evidence) : 'Let the agent authenticate to the proxy.';
  },
  // one sentence per kind of problem, naming its endpoints; a 407 explained here is not a plain
  // "give the agents credentials"
  collectRemedy(results: CheckResult[], facts) {
    const byFix = new Map<string, string[]>();
    for (const r of results) {
      if (r.check !== 'proxy-auth' || r.outcome !== 'fail') continue;
      const problem = r.evidence.problem as AuthProblem | undefined;
      if (!problem) continue;
      const fix = FIX[problem](r.evidence);
      byFix.set(fix, [...(byFix.get(fix) ?? []), r.endpoint]);
      if (problem !== 'rejected') facts.credentials = facts.credentials.filter((e) => e !== r.endpoint);
    }
    if (byFix.size)
      facts.authProblems = [...byFix].map(
        ([fix, endpoints]) => `${fix} (${[...new Set(endpoints)].join(', ')})`,
      );
  },
};
