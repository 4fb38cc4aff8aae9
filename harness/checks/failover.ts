/**
 * `failover`: when the primary port is not reachable through the proxy, the agent fails over to the
 * documented port and reaches the service (judged by the failover route policy, harness/route/policies.ts).
 */
import type { CheckDefinition } from './types.ts';

export const failover: CheckDefinition = {
  id: 'failover',
  title: 'Failover port works',
  dependsOn: [],
  blocks: 'neither the primary nor the failover port worked',
  explain: (c) =>
    `When the primary port is not reachable through the proxy, the agent fails over to ${c.host}:${c.port}, as the vendor documents, and reaches the service.`,
  remediation: (c) =>
    `Allow CONNECT to ${c.host}:${c.port} (the documented failover port) or to the primary port (squid: acl SSL_ports port ${c.port}).`,
};
