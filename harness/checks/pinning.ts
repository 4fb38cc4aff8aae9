/** `pinning`: an agent that pins the origin's key completes its TLS session (the key is the pinned one). */
import type { CheckDefinition } from './types.ts';
import { ROUTE } from './types.ts';

export const pinning: CheckDefinition = {
  id: 'pinning',
  title: 'Pinned key accepted',
  dependsOn: [ROUTE, 'connect-response'],
  blocks: 'the pinned agent refused the TLS session',
  explain: (c) =>
    `An agent that pins ${c.host}'s public key can complete its TLS session through the proxy (the presented key is the pinned one).`,
  remediation: (c) =>
    `A pinned agent refuses any substituted key, even one from a trusted corporate CA: bypass TLS inspection for ${c.host} (squid: "ssl_bump splice" for it).`,
};
