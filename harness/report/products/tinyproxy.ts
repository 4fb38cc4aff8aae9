/** tinyproxy: tinyproxy.conf. */
import type { ProductSetting } from '../../model.ts';
import { type ProductRemedy, refusedPorts, withHeadroom } from './types.ts';

/** Debian's tinyproxy.conf: ConnectPort 443 and 563, Timeout 600. */
const STOCK_CONNECT_PORTS = [443, 563];
const STOCK_TIMEOUT_S = 600;

export const tinyproxy: ProductRemedy = {
  settings(r) {
    const out: ProductSetting[] = [];
    const ports = refusedPorts(r).filter((p) => !STOCK_CONNECT_PORTS.includes(p));
    if (ports.length) {
      out.push({
        where:
          'tinyproxy.conf, next to the ConnectPort lines (once one ConnectPort line is present, CONNECT reaches the listed ports only), then restart tinyproxy',
        lines: ports.map((p) => `ConnectPort ${p}`),
      });
    }
    if (r.idleSeconds !== undefined) {
      out.push({
        where: 'tinyproxy.conf (idle time before a connection is closed)',
        lines: [`Timeout ${withHeadroom(r.idleSeconds, STOCK_TIMEOUT_S)}`],
      });
    }
    return out;
  },
  notes(r) {
    const out: string[] = [];
    if (r.refusedEndpoints.length || r.httpRefused?.length)
      out.push(
        'tinyproxy refuses single hosts through its Filter file: remove these hosts from it (or turn FilterDefaultDeny off).',
      );
    if (r.leakedProxyAuthorization?.length)
      out.push(
        'tinyproxy has no setting that removes a request header: unless it asks for credentials itself (BasicAuth), configure the agents without proxy credentials for it, so there is nothing to leak.',
      );
    if (r.strictConnect?.length)
      out.push(
        `tinyproxy always answers CONNECT with "HTTP/1.0 200 Connection established" and a Proxy-agent line, and no setting changes that: send the strict client's traffic (${r.strictConnect.map((s) => s.endpoint).join(', ')}) through a proxy that answers a bare "HTTP/1.1 200", or around this one.`,
      );
    return out;
  },
};
