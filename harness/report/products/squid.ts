/** squid: squid.conf lines. */
import type { ProxyRemediation } from '../../model.ts';
import { chunk, type ProductRemedy } from './types.ts';

export const SQUID_PLACEMENT =
  'acl lines next to your "acl SSL_ports port 443" line, before the http_access rules; "ssl_bump splice" before your first ssl_bump bump/stare rule';

/** Ports in Debian's stock `Safe_ports` (a CONNECT to any other port is refused by `deny !Safe_ports`). */
const SQUID_SAFE_PORTS = (p: number) =>
  [80, 21, 443, 70, 210, 280, 488, 591, 777].includes(p) || (p >= 1025 && p <= 65535);
/** squid's default read_timeout (15 minutes), which also bounds idle CONNECT tunnels. */
const SQUID_DEFAULT_READ_TIMEOUT_S = 900;
/** squid's request_timeout and client_idle_pconn_timeout defaults (5 and 2 minutes). */
const SQUID_DEFAULT_REQUEST_TIMEOUT_S = 300;
const SQUID_DEFAULT_CLIENT_IDLE_PCONN_S = 120;

const hostOf = (endpoint: string) => endpoint.replace(/#.*$/, '').replace(/:\d+$/, '');

export function squidLines(r: ProxyRemediation): string[] {
  const out: string[] = [];
  const ports = [...new Set([...r.connectPorts.map((p) => p.port), ...(r.bumpedPorts ?? [])])]
    .filter((p) => p !== 443)
    .sort((a, b) => a - b);
  for (const group of chunk(ports, 16)) out.push(`acl SSL_ports port ${group.join(' ')}`);
  const unsafe = ports.filter((p) => !SQUID_SAFE_PORTS(p));
  for (const group of chunk(unsafe, 16)) out.push(`acl Safe_ports port ${group.join(' ')}`);
  if (r.noInspect.length) {
    for (const group of chunk(
      r.noInspect.map((n) => n.host),
      8,
    ))
      out.push(`acl proxycheck_nobump ssl::server_name ${group.join(' ')}`);
    out.push('ssl_bump splice proxycheck_nobump');
  }
  if (r.nonTls?.length) {
    // spliced at step 1, before squid peeks for a ClientHello, these hosts' tunnels carry any bytes.
    // Never "on_unsupported_protocol tunnel": squid re-checks the tunnelled bytes as a request with
    // no method, so "deny CONNECT !SSL_ports" no longer applies and ports the policy denies open up
    // (squid 5.7, measured).
    for (const group of chunk([...new Set(r.nonTls.map(hostOf))], 8))
      out.push(`acl proxycheck_nontls dstdomain ${group.join(' ')}`);
    out.push('ssl_bump splice proxycheck_nontls');
  }
  if (r.idleSeconds !== undefined) {
    out.push(`read_timeout ${Math.max(Math.ceil(r.idleSeconds) + 60, SQUID_DEFAULT_READ_TIMEOUT_S)} seconds`);
  }
  if (r.idleInspectedSeconds !== undefined) {
    // a bumped connection is an HTTP client connection to squid: its silence is timed by these,
    // not by read_timeout (squid 5.7: request_timeout before the first request, then
    // client_idle_pconn_timeout between requests)
    const n = Math.ceil(r.idleInspectedSeconds) + 60;
    out.push(`request_timeout ${Math.max(n, SQUID_DEFAULT_REQUEST_TIMEOUT_S)} seconds`);
    out.push(`client_idle_pconn_timeout ${Math.max(n, SQUID_DEFAULT_CLIENT_IDLE_PCONN_S)} seconds`);
  }
  // squid drops Proxy-Authorization unless a cache_peer passes it on (login=PASSTHRU)
  if (r.leakedProxyAuthorization?.length) out.push('request_header_access Proxy-Authorization deny all');
  return out;
}

export const squid: ProductRemedy = {
  settings(r) {
    const lines = squidLines(r);
    return lines.length ? [{ where: `squid.conf (${SQUID_PLACEMENT})`, lines }] : [];
  },
  notes(r) {
    const out: string[] = [];
    if (r.bumpedPorts?.length) {
      out.push(
        `Make sure port(s) ${r.bumpedPorts.join(', ')} are in SSL_ports. On an ssl-bump port squid answers 200 even to a CONNECT its http_access denies and bumps the session to show the error, so a missing port looks like interception, and splicing alone does not help.`,
      );
    }
    if (r.httpRefused?.length)
      out.push('squid: plain HTTP to these hosts needs an http_access allow rule above the final deny.');
    if (r.authSchemes?.length)
      out.push(
        'squid offers each scheme it has an auth_param block for (basic, digest, negotiate, ntlm): add one for the scheme the agents speak.',
      );
    if (r.lifetimeSeconds !== undefined)
      out.push(
        'squid itself has no lifetime cap on tunnels (client_lifetime does not apply to them): look for the limit on the way.',
      );
    return out;
  },
};
