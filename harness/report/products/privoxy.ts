/** Privoxy: its config file and user.action. */
import type { ProductSetting } from '../../model.ts';
import { type ProductRemedy, refusedPorts, uninspectedHosts, withHeadroom } from './types.ts';

export const privoxy: ProductRemedy = {
  settings(r) {
    const out: ProductSetting[] = [];
    const ports = refusedPorts(r);
    if (ports.length) {
      out.push({
        where: 'user.action (limit-connect; without it Privoxy lets CONNECT reach port 443 only)',
        lines: [`{+limit-connect{${[...new Set([443, ...ports])].sort((a, b) => a - b).join(',')}}}`, '/'],
      });
    }
    const hosts = uninspectedHosts(r);
    if (hosts.length) {
      out.push({
        where: 'user.action (exempt these hosts from https-inspection)',
        lines: ['{-https-inspection}', ...hosts.map((h) => `.${h}`)],
      });
    }
    if (r.idleSeconds !== undefined) {
      out.push({
        where: 'the Privoxy config file',
        lines: [`socket-timeout ${withHeadroom(r.idleSeconds, 300)}`],
      });
    }
    return out;
  },
};
