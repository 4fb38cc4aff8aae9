/**
 * `fallback`: when the configured proxy cannot be reached, a fail-open agent falls back to "auto
 * detect" (the machine's WPAD or PAC script, or DIRECT), takes the first route that works, and is
 * on it within its profile's threshold (judged by the fallback route policy,
 * harness/route/policies.ts; the machine's network is harness/route/client-network.ts).
 */
import type { CheckDefinition } from './types.ts';

export const fallback: CheckDefinition = {
  id: 'fallback',
  title: 'Falls back to auto-detect',
  dependsOn: [],
  blocks: 'the auto-detect route failed',
  explain: (c) =>
    `When the configured proxy cannot be reached, the agent falls back to "auto detect" (the machine's WPAD or PAC script, or DIRECT), takes the first route that works, and reaches ${c.host}:${c.port} in time.`,
  remediation(c, v) {
    const stage = v.evidence.pacStage;
    if (stage === 'fetch')
      return `The agent's proxy script (${String(v.evidence.pacSource)}) could not be fetched: publish it where the machines can reach it (for WPAD, a wpad host in their DNS suffix serving /wpad.dat), or fix the configured proxy so the agent does not need it.`;
    if (stage)
      return `The agent's proxy script (${String(v.evidence.pacSource)}) does not give a route (${String(stage)}): fix the script so FindProxyForURL answers "PROXY host:port" or "DIRECT" for ${c.host}.`;
    if (v.evidence.fallbackWithinMs !== undefined && v.evidence.sessionWorked === true)
      return `The agent reached ${c.host} only after waiting out its connect deadline on a proxy that never answers: fix the configured proxy address, or make the dead proxy refuse at once (a closed port instead of a dropped SYN) so the agent falls back without waiting.`;
    return `The configured proxy cannot be reached and no auto-detect route reaches ${c.host}:${c.port}: fix the proxy address in the agent's settings, publish a proxy script that names a working proxy, or let the machine reach ${c.host} directly.`;
  },
};
