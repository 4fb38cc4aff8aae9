/**
 * `fallback`: when the configured proxy cannot be reached, the agent falls back to "auto detect"
 * (judged by the fallback route policy, harness/route/policies.ts).
 */
import type { CheckDefinition } from './types.ts';

export const fallback: CheckDefinition = {
  id: 'fallback',
  title: 'Falls back to auto-detect',
  dependsOn: [],
  blocks: 'the auto-detect route failed',
  explain: (c) =>
    `When the configured proxy cannot be reached, the agent falls back to "auto detect" (the user's own route) and still reaches ${c.host}:${c.port}.`,
  remediation: (c) =>
    `The configured proxy is unreachable and the fallback route to ${c.host}:${c.port} failed too: fix the proxy address in the agent's settings, or let the machine reach ${c.host} directly.`,
};
