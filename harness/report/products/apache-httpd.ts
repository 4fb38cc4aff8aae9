/** Apache httpd as a forward proxy (mod_proxy, mod_proxy_connect, mod_proxy_http). */
import type { ProductSetting } from '../../model.ts';
import { type ProductRemedy, refusedPorts, withHeadroom } from './types.ts';

/** AllowCONNECT's default when the directive is absent. */
const DEFAULT_CONNECT_PORTS = [443, 563];
/** Debian's apache2.conf sets Timeout 300; a tunnel's idle timer is the longer of Timeout and ProxyTimeout (measured on 2.4.71, test/products-debian.test.ts). */
const DEBIAN_TIMEOUT_S = 300;

export const apacheHttpd: ProductRemedy = {
  settings(r) {
    const out: ProductSetting[] = [];
    const ports = refusedPorts(r);
    if (ports.length) {
      out.push({
        where:
          'the server config or virtual host with "ProxyRequests On" (mod_proxy_connect, a2enmod proxy_connect; on Debian /etc/apache2/mods-available/proxy_connect.conf). AllowCONNECT replaces its default list "443 563", so the line keeps them',
        lines: [
          `AllowCONNECT ${[...new Set([...DEFAULT_CONNECT_PORTS, ...ports])].sort((a, b) => a - b).join(' ')}`,
        ],
      });
    }
    if (r.leakedProxyAuthorization?.length) {
      out.push({
        where:
          'inside the forward proxy\'s <Proxy "*"> block (mod_headers: a2enmod headers). mod_proxy passes on a Proxy-Authorization it did not use itself',
        lines: ['RequestHeader unset Proxy-Authorization'],
      });
    }
    if (r.idleSeconds !== undefined) {
      out.push({
        where:
          "the server config (mod_proxy). A CONNECT tunnel is closed after the longer of Timeout and ProxyTimeout of silence (Timeout is 300 s in Debian's apache2.conf), so this line raises the idle timer whatever Timeout says",
        lines: [`ProxyTimeout ${withHeadroom(r.idleSeconds, DEBIAN_TIMEOUT_S)}`],
      });
    }
    return out;
  },
  notes(r) {
    const out: string[] = [];
    if (r.strictConnect?.length) {
      out.push(
        `Apache httpd's mod_proxy_connect always answers CONNECT with "HTTP/1.0 200 Connection Established" and a Proxy-agent line, and no directive changes that: send the strict client's traffic (${r.strictConnect.map((s) => s.endpoint).join(', ')}) through a proxy that answers a bare "HTTP/1.1 200", or around this one.`,
      );
    }
    if (r.refusedEndpoints.length || r.httpRefused?.length) {
      out.push(
        'Apache httpd refuses single hosts through a ProxyBlock line or an access rule in a <Proxy> section: remove these hosts from ProxyBlock, or add "Require all granted" (or your client network) in their <Proxy> section.',
      );
    }
    return out;
  },
};
