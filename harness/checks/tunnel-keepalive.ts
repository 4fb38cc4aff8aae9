/** `tunnel-keepalive`: a long-lived tunnel stays open for the whole session; every keep-alive is answered. */
import type { CheckResult } from '../model.ts';
import { type CheckDefinition, ROUTE } from './types.ts';

function idleOf(r: CheckResult, fallback: number | undefined): number | undefined {
  const e = r.evidence;
  for (const k of ['requiredSeconds', 'idleSeconds']) if (typeof e[k] === 'number') return e[k] as number;
  if (typeof e.idleMs === 'number') return (e.idleMs as number) / 1000;
  return fallback;
}

export const tunnelKeepalive: CheckDefinition = {
  id: 'tunnel-keepalive',
  title: 'Long-lived tunnel stays up',
  dependsOn: [ROUTE, 'connect-response', 'tls-interception', 'pinning', 'protocol'],
  blocks: 'the tunnel did not stay up',
  explain: (c) =>
    `A long-lived tunnel to ${c.host}:${c.port} stays open for the whole session and every keep-alive is answered.`,
  remediation(c, v) {
    const need = Number(v.evidence.requiredSeconds ?? 0);
    return `The proxy closed the tunnel to ${c.host}:${c.port} early: raise its idle/read timeout for CONNECT tunnels above the agent's keep-alive interval and allow sessions of at least ${need || 'the documented'} s (squid: read_timeout and client_lifetime).`;
  },
  // idle tunnels: how long they must stay open
  collectRemedy(results, facts, env) {
    const idleFails = results.filter((r) => r.check === 'tunnel-keepalive' && r.outcome === 'fail');
    if (!idleFails.length) return;
    const idle = Math.max(...idleFails.map((r) => idleOf(r, env.idleSeconds) ?? 0)) || env.idleSeconds;
    if (idle !== undefined) facts.idleSeconds = idle;
  },
};
