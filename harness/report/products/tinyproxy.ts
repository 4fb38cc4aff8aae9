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
    return r.refusedEndpoints.length || r.httpRefused?.length
      ? [
          'tinyproxy refuses single hosts through its Filter file: remove these hosts from it (or turn FilterDefaultDeny off).',
        ]
      : [];
  },
};
