/** `mtls`: mutual TLS completes end to end; the origin verifies the device certificate. */
import { type CheckDefinition, ROUTE } from './types.ts';

export const mtls: CheckDefinition = {
  id: 'mtls',
  title: 'Device certificate reaches the origin',
  dependsOn: [ROUTE, 'connect-response'],
  blocks: 'the origin did not verify the device certificate',
  explain: (c) =>
    `Mutual TLS with ${c.host} completes end to end: the origin verifies the device certificate the agent presents.`,
  remediation: (c, v) =>
    v.evidence.reSignedBy || v.evidence.interceptedBy
      ? `An intercepting proxy terminates TLS and cannot present the device's certificate to ${c.host}: exclude it from inspection (squid: an ssl::server_name ACL for ${c.host} used by "ssl_bump splice").`
      : `Let the TLS session to ${c.host}:${c.port} pass through untouched so the origin can verify the device certificate.`,
};
