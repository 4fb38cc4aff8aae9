/** The printed "Remediation" section, and the squid.conf edit that proves the printed lines work. */
import type { ProxyRemediation } from '../model.ts';

const SQUID_PLACEMENT =
  'acl lines next to your "acl SSL_ports port 443" line, before the http_access rules; "ssl_bump splice" before your first ssl_bump bump/stare rule';

/** The "Remediation" section printed after the verdict table; '' when there is nothing to fix. */
export function renderRemediation(items: ProxyRemediation[] | undefined): string {
  if (!items?.length) return '';
  const lines = ['', 'Remediation'];
  for (const r of items) {
    const what =
      r.product === 'squid'
        ? `squid, from ${r.productEvidence}`
        : r.product === 'other'
          ? `not squid: ${r.productEvidence}`
          : 'product unknown: squid lines and generic steps';
    lines.push(`proxy ${r.proxy} (${what}):`);
    for (const t of r.text) lines.push(`  - ${t}`);
    if (r.squidConf.length) {
      lines.push(
        `  ${r.product === 'squid' ? 'squid.conf' : 'if it is squid, squid.conf'} (${SQUID_PLACEMENT}):`,
      );
      for (const l of r.squidConf) lines.push(`    ${l}`);
    }
  }
  return lines.join('\n') + '\n';
}

/**
 * Puts remediation lines into a squid.conf text where the printed advice says: `acl` lines after
 * the last `acl SSL_ports` line (else before the first http_access or ssl_bump rule), `ssl_bump`
 * lines before the first ssl_bump rule, anything else at the end. Used to prove the advice works.
 */
export function insertSquidLines(conf: string, add: string[]): string {
  const lines = conf.replace(/\n$/, '').split('\n');
  const lastIndex = (re: RegExp) => lines.reduce((found, l, i) => (re.test(l) ? i : found), -1);
  const firstIndex = (re: RegExp) => lines.findIndex((l) => re.test(l));
  const acls = add.filter((l) => /^acl\s/.test(l));
  const bumps = add.filter((l) => /^ssl_bump\s/.test(l));
  const rest = add.filter((l) => !acls.includes(l) && !bumps.includes(l));
  if (bumps.length) {
    const at = firstIndex(/^ssl_bump\s/);
    lines.splice(at < 0 ? lines.length : at, 0, ...bumps);
  }
  if (acls.length) {
    const ssl = lastIndex(/^acl\s+SSL_ports\s/);
    const rule = firstIndex(/^(http_access|ssl_bump)\s/);
    const at = ssl >= 0 ? ssl + 1 : rule >= 0 ? rule : lines.length;
    lines.splice(at, 0, ...acls);
  }
  lines.push(...rest);
  return lines.join('\n') + '\n';
}
