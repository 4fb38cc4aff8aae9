/** The readable verdict table printed on stdout. Glyphs and colours live here only. */
import type { CheckResult, RunReport } from '../model.ts';
import { totalsLine } from './summary.ts';

function pad(s: string, n: number): string {
  return s.length >= n ? s : s + ' '.repeat(n - s.length);
}

export function renderTable(report: RunReport, opts: { verbose?: boolean } = {}): string {
  const lines: string[] = [];
  for (const p of report.proxies) {
    lines.push(
      `proxy ${p.id}: ${p.version} (${p.runtime}${p.startMs !== undefined ? `, started in ${p.startMs} ms` : ''})`,
    );
  }
  lines.push('');
  const rows = report.results.map((r) => [
    r.proxy,
    r.profile,
    r.endpoint,
    r.check,
    r.outcome.toUpperCase(),
    r.matched ? 'yes' : `NO (expected ${r.expected})`,
    r.message,
  ]);
  const header = ['PROXY', 'PROFILE', 'ENDPOINT', 'CHECK', 'OUTCOME', 'AS EXPECTED', 'DETAIL'];
  const widths = header.map((h, i) =>
    Math.max(h.length, ...rows.map((r) => (i < 6 ? (r[i] ?? '').length : 0))),
  );
  lines.push(header.map((h, i) => (i < 6 ? pad(h, widths[i] ?? 0) : h)).join('  '));
  for (const r of rows) lines.push(r.map((c, i) => (i < 6 ? pad(c, widths[i] ?? 0) : c)).join('  '));
  const unmatched = report.results.filter((r) => !r.matched);
  if (unmatched.length || opts.verbose) {
    lines.push('');
    for (const r of opts.verbose ? report.results.filter((x) => x.remediation) : unmatched)
      lines.push(...detail(r));
  }
  lines.push('');
  lines.push(totalsLine(report));
  return lines.join('\n') + '\n';
}

function detail(r: CheckResult): string[] {
  const out = [
    `${r.id}: ${r.outcome} (expected ${r.expected}${r.expectedReason ? `: ${r.expectedReason}` : ''})`,
    `  ${r.message}`,
  ];
  if (r.remediation) out.push(`  remedy: ${r.remediation}`);
  return out;
}
