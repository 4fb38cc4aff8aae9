/** `tls-interception`: the certificate presented through the tunnel is the origin's own. */

import type { CheckResult } from '../model.ts';
import { endpointKey, parseEndpoint } from '../model.ts';
import { type CheckDefinition, type RemedyEnv, type RemedyFacts, ROUTE, str } from './types.ts';

export const tlsInterception: CheckDefinition = {
  id: 'tls-interception',
  title: 'TLS not intercepted',
  dependsOn: [ROUTE, 'connect-response'],
  blocks: 'no TLS session',
  explain: (c) =>
    `The certificate presented for ${c.host} through the tunnel is the origin's own, issued by the public root, not re-signed by an inspection CA.`,
  remediation: (c) =>
    `Exclude ${c.host} from TLS inspection (SSL bump / deep inspection): the vendor requires these hosts to reach the agent untouched. In squid: list it in an ssl::server_name ACL used by "ssl_bump splice".`,
  collectRemedy: collectInterception,
};

function cnOf(dn: string): string {
  return /(?:^|, |\n)CN=([^,\n]*)/.exec(dn)?.[1] ?? dn;
}

/**
 * Hosts to exclude from inspection (pinned, must-not-inspect, or not HTTP inside TLS), hosts whose
 * re-signing CA the agents do not trust, and ports other than 443 where TLS was re-signed. Reads
 * the `pinning` results too: a re-signed pinned host fails pinning.
 */
function collectInterception(results: CheckResult[], facts: RemedyFacts, env: RemedyEnv): void {
  const hostOf = (endpoint: string) => parseEndpoint(endpoint).host;
  const rowOf = (endpoint: string) => env.rows.get(endpointKey(parseEndpoint(endpoint)).toLowerCase());
  const fails = results.filter((r) => r.outcome === 'fail');
  // a re-signed must-not-inspect host fails tls-interception, a re-signed pinned one fails pinning;
  // whether a host is pinned comes from the evidence, the catalog row, or, failing both, from a
  // pinning failure on a host that may otherwise be inspected
  const seen = new Map<string, { interception?: CheckResult; pinning?: CheckResult }>();
  for (const r of fails) {
    if (r.check === 'tls-interception' && str(r.evidence.reSignedBy))
      seen.set(r.endpoint, { ...seen.get(r.endpoint), interception: r });
    if (r.check === 'pinning' && str(r.evidence.presentedIssuer))
      seen.set(r.endpoint, { ...seen.get(r.endpoint), pinning: r });
  }
  const noInspect = new Map<string, RemedyFacts['noInspect'][number]>();
  const untrusted = new Map<string, RemedyFacts['untrustedInspection'][number]>();
  for (const [endpoint, { interception, pinning }] of seen) {
    const host = hostOf(endpoint);
    const row = rowOf(endpoint);
    const by = interception
      ? str(interception.evidence.reSignedByCN) || cnOf(str(interception.evidence.reSignedBy))
      : cnOf(str(pinning?.evidence.presentedIssuer));
    const flag = (v: unknown) => (typeof v === 'boolean' ? v : undefined);
    const mustNotInspect = flag(interception?.evidence.mustNotInspect) ?? row?.mustNotInspect;
    const pinned =
      flag(interception?.evidence.pinned) ?? row?.pinned ?? (pinning !== undefined && !interception);
    if (pinning || mustNotInspect !== false) {
      const prev = noInspect.get(host);
      noInspect.set(host, {
        host,
        pinned: pinned || (prev?.pinned ?? false),
        reSignedBy: prev?.reSignedBy ?? by,
      });
    } else untrusted.set(host, { host, reSignedBy: by });
  }
  // a warned interception (the vendor allows it) that the agent still refused: the CA is not deployed
  for (const r of results) {
    if (r.check !== 'tls-interception' || r.outcome !== 'warn' || !str(r.evidence.reSignedBy)) continue;
    const refused = results.some(
      (x) =>
        x.endpoint === r.endpoint &&
        x.outcome === 'dependency_fail' &&
        x.evidence.dependsOn === 'tls-interception',
    );
    const host = hostOf(r.endpoint);
    const by = cnOf(str(r.evidence.reSignedBy));
    const transport = rowOf(r.endpoint)?.transport;
    if (transport === 'tls' || transport === 'mqtts') {
      // not HTTP inside TLS: a proxy that decrypts expects HTTP and breaks it (squid answers 400),
      // so deploying the CA cannot help; only not inspecting it does
      if (!noInspect.has(host)) noInspect.set(host, { host, pinned: false, reSignedBy: by, notHttp: true });
    } else if (refused && !noInspect.has(host)) untrusted.set(host, { host, reSignedBy: by });
  }
  facts.noInspect = [...noInspect.values()].sort((a, b) => a.host.localeCompare(b.host));
  facts.untrustedInspection = [...untrusted.values()].sort((a, b) => a.host.localeCompare(b.host));
  // TLS re-signed on a port other than 443: on an ssl-bump port squid answers 200 even to a CONNECT
  // its http_access denies and bumps it to show the error, so the port may be missing from SSL_ports
  const bumped = [
    ...new Set(
      results
        .filter((r) => r.check === 'tls-interception' && str(r.evidence.reSignedBy))
        .map((r) => parseEndpoint(r.endpoint).port)
        // a port already refused openly is in connectPorts (the connect hook runs first)
        .filter((p) => p !== 443 && !facts.connectPorts.some((c) => c.port === p)),
    ),
  ].sort((a, b) => a - b);
  if (bumped.length) facts.bumpedPorts = bumped;
}
