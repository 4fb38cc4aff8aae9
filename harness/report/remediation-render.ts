/** The printed "Remediation" section, and the squid.conf edit that proves the printed lines work. */
import type { ProxyRemediation } from '../model.ts';

/** `Apache httpd 2.4.71 (high confidence), from "Server: Apache/2.4.71 (Debian)" in …` */
export function productLine(r: ProxyRemediation): string {
  if (r.product === 'unknown')
    return `product unknown${r.productEvidence ? ` (${r.productEvidence})` : ''}: product-neutral steps`;
  const first = r.productEvidence?.split('; ')[0];
  return `${r.productName ?? r.product}${first ? `, from ${first}` : ''}`;
}

/** The "Remediation" section printed after the verdict table; '' when there is nothing to fix. */
export function renderRemediation(items: ProxyRemediation[] | undefined): string {
  if (!items?.length) return '';
  const lines = ['', 'Remediation'];
  for (const r of items) {
    lines.push(`proxy ${r.proxy} (${productLine(r)}):`);
    for (const t of r.text) lines.push(`  - ${t}`);
    for (const s of r.settings ?? []) {
      lines.push(`  ${s.where}:`);
      for (const l of s.lines) lines.push(`    ${l}`);
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
