/**
 * `headers`: request heads inside a tunnel arrive byte-identical; forwarded plain HTTP keeps its
 * end-to-end headers and never leaks Proxy-Authorization to the origin.
 */
import { type CheckDefinition, ROUTE } from './types.ts';

export const headers: CheckDefinition = {
  id: 'headers',
  title: 'Headers untouched in the tunnel',
  dependsOn: [ROUTE, 'connect-response', 'tls-interception', 'pinning', 'protocol'],
  blocks: 'no request reached the origin',
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
  collectRemedy(results, facts) {
    for (const r of results) {
      if (r.check === 'headers' && r.outcome === 'fail' && r.evidence.leakedProxyAuthorization === true)
        facts.leakedProxyAuthorization = [...(facts.leakedProxyAuthorization ?? []), r.endpoint];
    }
  },
};
