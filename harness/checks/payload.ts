/** `payload`: bodies arrive unchanged both ways (SHA-256 compared at both ends). */
import { type CheckDefinition, ROUTE, str } from './types.ts';

export const payload: CheckDefinition = {
  id: 'payload',
  title: 'Payload intact',
  dependsOn: [ROUTE, 'connect-response', 'tls-interception', 'pinning', 'protocol'],
  blocks: 'the exchange did not carry its payload',
  explain: (c) =>
    `Request and response bodies exchanged with ${c.host} arrive unchanged in both directions (SHA-256 compared).`,
  remediation: () =>
    'Something between the agent and the origin rewrites bodies: disable content rewriting, compression or scanning that alters payloads for these hosts.',
  // a proxy that intercepts TLS and breaks the tunnels of agents that do not speak TLS on them
  collectRemedy(results, facts, env) {
    const intercepts = results.some((r) => r.check === 'tls-interception' && str(r.evidence.reSignedBy));
    if (!intercepts) return;
    const nonTls = results
      .filter(
        (r) =>
          r.check === 'payload' &&
          r.outcome === 'fail' &&
          /binary frames|tunnel closed|echoed/.test(r.message),
      )
      .filter((r) => !results.some((x) => x.endpoint === r.endpoint && x.check === 'tls-interception'))
      .map((r) => r.endpoint);
    // a non-TLS agent refused inside the inspected session: once its port is allowed, the
    // inspection still closes its tunnel, so it needs the same exemption
    for (const r of results) {
      if (r.check !== 'connect' || r.outcome !== 'fail' || r.evidence.insideStatusCode === undefined)
        continue;
      if (env.rows.get(r.endpoint.split('#')[0]?.toLowerCase() ?? '')?.transport === 'tcp')
        nonTls.push(r.endpoint);
    }
    if (nonTls.length) facts.nonTls = nonTls;
  },
};
