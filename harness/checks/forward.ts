/** `forward`: the proxy forwards a plain-HTTP request (absolute form) and relays the origin's answer. */
import { type CheckDefinition, PROXY_CREDENTIALS_REMEDY } from './types.ts';

export const forward: CheckDefinition = {
  id: 'forward',
  title: 'Plain HTTP forwarded',
  dependsOn: [],
  blocks: 'the proxy did not forward the request',
  explain: (c) =>
    `The proxy forwards the agent's plain-HTTP request for ${c.host}:${c.port} (absolute-form) to the origin and relays the origin's answer.`,
  remediation(c, v) {
    const status = Number(v.evidence.statusCode ?? 0);
    if (status === 407) return PROXY_CREDENTIALS_REMEDY;
    if (status === 403)
      return `Allow plain HTTP to ${c.host} on port ${c.port} (squid: an "http_access allow" rule for it, above the final deny; port ${c.port} must be in Safe_ports).`;
    return `Make the proxy forward plain HTTP to ${c.host}:${c.port} and relay the origin's answer unchanged.`;
  },
  // forwarded plain-HTTP requests: 407 needs the same credentials, 403 an allow rule
  collectRemedy(results, facts) {
    for (const r of results.filter((x) => x.check === 'forward' && x.outcome === 'fail')) {
      const status = Number(r.evidence.statusCode ?? 0);
      if (status === 407) facts.credentials.push(r.endpoint);
      else if (status === 403) facts.httpRefused = [...(facts.httpRefused ?? []), r.endpoint];
    }
  },
};
