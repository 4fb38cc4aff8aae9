/** Apache Traffic Server as a forward proxy: records.config (9.x) or records.yaml (10 and later). */
import type { ProductFingerprint, ProductSetting } from '../../model.ts';
import { type ProductRemedy, refusedPorts, withHeadroom } from './types.ts';

/** ATS 9's defaults: transaction_no_activity_timeout_in/out 30 s, transaction_active_timeout_in 900 s. */
const NO_ACTIVITY_DEFAULT_S = 30;
const ACTIVE_DEFAULT_S = 900;

/** One records setting in the file this version reads. */
function records(
  fp: ProductFingerprint,
  name: string,
  type: 'STRING' | 'INT',
  value: string | number,
): string {
  if (Number(fp.version?.split('.')[0] ?? 9) >= 10) {
    // records.yaml: `ts:` keys without the `proxy.config.` prefix
    return `${name.replace(/^proxy\.config\./, '')}: ${type === 'STRING' ? JSON.stringify(String(value)) : value}`;
  }
  return `CONFIG ${name} ${type} ${value}`;
}

function where(fp: ProductFingerprint): string {
  return Number(fp.version?.split('.')[0] ?? 9) >= 10
    ? 'records.yaml (under ts:, dotted names as nested keys), then traffic_ctl config reload'
    : 'records.config, then traffic_ctl config reload';
}

export const trafficServer: ProductRemedy = {
  settings(r, fp) {
    const lines: string[] = [];
    const ports = refusedPorts(r);
    if (ports.length) {
      // the setting replaces the default "443": keep it
      lines.push(
        records(
          fp,
          'proxy.config.http.connect_ports',
          'STRING',
          [...new Set([443, ...ports])].sort((a, b) => a - b).join(' '),
        ),
      );
    }
    if (r.idleSeconds !== undefined) {
      const n = withHeadroom(r.idleSeconds, NO_ACTIVITY_DEFAULT_S);
      lines.push(records(fp, 'proxy.config.http.transaction_no_activity_timeout_in', 'INT', n));
      lines.push(records(fp, 'proxy.config.http.transaction_no_activity_timeout_out', 'INT', n));
    }
    if (r.lifetimeSeconds !== undefined) {
      lines.push(
        records(
          fp,
          'proxy.config.http.transaction_active_timeout_in',
          'INT',
          withHeadroom(r.lifetimeSeconds, ACTIVE_DEFAULT_S),
        ),
      );
    }
    if (r.leakedProxyAuthorization?.length) {
      lines.push(records(fp, 'proxy.config.http.forward.proxy_auth_to_parent', 'INT', 0));
    }
    const out: ProductSetting[] = lines.length ? [{ where: where(fp), lines }] : [];
    return out;
  },
  notes(r) {
    const out: string[] = [];
    if (r.strictConnect?.length) {
      out.push(
        `Traffic Server adds header lines (Date, Connection, Server) to its CONNECT answer; proxy.config.http.response_server_enabled 0 drops only Server: send the strict client's traffic (${r.strictConnect.map((s) => s.endpoint).join(', ')}) through a proxy that answers a bare "HTTP/1.1 200", or around this one.`,
      );
    }
    if (r.refusedEndpoints.length || r.httpRefused?.length) {
      out.push(
        'Traffic Server refuses single hosts through ip_allow.yaml (methods per source network) or remap.config rules: allow these hosts there.',
      );
    }
    if (r.credentials.length || r.authSchemes?.length) {
      out.push(
        'Traffic Server authenticates proxy clients only through a plugin: the agents need the credentials (and the scheme) that plugin asks for.',
      );
    }
    return out;
  },
};
