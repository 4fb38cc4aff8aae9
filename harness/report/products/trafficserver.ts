/** Apache Traffic Server as a forward proxy: records.config (9.x) or records.yaml (10 and later). */
import type { ProductFingerprint, ProductSetting } from '../../model.ts';
import { type ProductRemedy, refusedPorts, withHeadroom } from './types.ts';

/** ATS 9's defaults: transaction_no_activity_timeout_in/out 30 s, transaction_active_timeout_in 900 s. */
const NO_ACTIVITY_DEFAULT_S = 30;
const ACTIVE_DEFAULT_S = 900;

type Entry = [name: string, type: 'STRING' | 'INT', value: string | number];

const yamlStyle = (fp: ProductFingerprint) => Number(fp.version?.split('.')[0] ?? 9) >= 10;

/**
 * The settings in the file this version reads: `CONFIG name TYPE value` lines for records.config
 * (9.x), a YAML document under the `records` root with the dotted name as nested keys for
 * records.yaml (10 and later; a later document in the file overrides earlier fields).
 */
function render(fp: ProductFingerprint, entries: Entry[]): string[] {
  if (!yamlStyle(fp)) return entries.map(([name, type, value]) => `CONFIG ${name} ${type} ${value}`);
  // its own document ("---"), so that appended to the end of records.yaml it overrides earlier fields
  const out = ['---', 'records:'];
  let open: string[] = [];
  for (const [name, type, value] of entries) {
    const path = name.replace(/^proxy\.config\./, '').split('.');
    const leaf = path.pop() ?? name;
    let same = 0;
    while (same < open.length && same < path.length && open[same] === path[same]) same += 1;
    for (let i = same; i < path.length; i++) out.push(`${'  '.repeat(i + 1)}${path[i]}:`);
    open = path;
    out.push(
      `${'  '.repeat(path.length + 1)}${leaf}: ${type === 'STRING' ? JSON.stringify(String(value)) : value}`,
    );
  }
  return out;
}

function where(fp: ProductFingerprint): string {
  return yamlStyle(fp)
    ? 'records.yaml (this document at its end overrides earlier fields), then traffic_ctl config reload'
    : 'records.config, then traffic_ctl config reload';
}

export const trafficServer: ProductRemedy = {
  settings(r, fp) {
    const entries: Entry[] = [];
    const ports = refusedPorts(r);
    // the setting replaces the default "443": keep it
    if (ports.length)
      entries.push([
        'proxy.config.http.connect_ports',
        'STRING',
        [...new Set([443, ...ports])].sort((a, b) => a - b).join(' '),
      ]);
    if (r.idleSeconds !== undefined) {
      const n = withHeadroom(r.idleSeconds, NO_ACTIVITY_DEFAULT_S);
      entries.push(['proxy.config.http.transaction_no_activity_timeout_in', 'INT', n]);
      entries.push(['proxy.config.http.transaction_no_activity_timeout_out', 'INT', n]);
    }
    if (r.lifetimeSeconds !== undefined)
      entries.push([
        'proxy.config.http.transaction_active_timeout_in',
        'INT',
        withHeadroom(r.lifetimeSeconds, ACTIVE_DEFAULT_S),
      ]);
    if (r.leakedProxyAuthorization?.length)
      entries.push(['proxy.config.http.forward.proxy_auth_to_parent', 'INT', 0]);
    const out: ProductSetting[] = entries.length ? [{ where: where(fp), lines: render(fp, entries) }] : [];
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
