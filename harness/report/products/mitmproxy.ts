/** mitmproxy: the ignore_hosts option (config.yaml or --ignore-hosts). */
import type { ProductSetting } from '../../model.ts';
import { type ProductRemedy, uninspectedHosts } from './types.ts';

const regexEscape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

export const mitmproxy: ProductRemedy = {
  settings(r) {
    const out: ProductSetting[] = [];
    const hosts = uninspectedHosts(r);
    if (hosts.length) {
      out.push({
        where:
          '~/.mitmproxy/config.yaml (or one --ignore-hosts per line): these hosts pass through untouched',
        lines: ['ignore_hosts:', ...hosts.map((h) => `  - '^${regexEscape(h)}:'`)],
      });
    }
    return out;
  },
  notes(r) {
    return r.connectPorts.length
      ? [
          'mitmproxy itself allows CONNECT to any port: the refusal comes from an addon script or an upstream proxy (--mode upstream); change it there.',
        ]
      : [];
  },
};
