/**
 * What a run prints on a terminal by default: the verdict first, a compact profile × proxy matrix,
 * then only the results that did not match their expectation (width-limited, with message and
 * remedy). The full per-result table is `--details` (report/table.ts). Colour only on a TTY, and
 * never with NO_COLOR set (https://no-color.org); glyphs and colours live in renderers only.
 */
import type { CheckResult, RunReport } from '../model.ts';

export interface SummaryOptions {
  /** Colour the verdict and the matrix (a TTY without NO_COLOR). */
  color?: boolean;
  /** Characters a line may take (the terminal's width; default 100). */
  width?: number;
  /** How many unexpected results to show before "and N more" (default 12). */
  maxUnexpected?: number;
}

const RED = '\x1b[31m';
const GREEN = '\x1b[32m';
const YELLOW = '\x1b[33m';
const RESET = '\x1b[0m';

/** Colour on for a TTY stream unless NO_COLOR is set (to anything non-empty). */
export function wantColor(stream: { isTTY?: boolean }, env: NodeJS.ProcessEnv = process.env): boolean {
  return Boolean(stream.isTTY) && !env.NO_COLOR;
}

function fit(s: string, width: number): string {
  return s.length <= width ? s : `${s.slice(0, Math.max(0, width - 1))}…`;
}

/** The one-line totals, as tools and tests read them. */
export function totalsLine(report: RunReport): string {
  const s = report.summary;
  // our own failures are named only when there are any
  const ours = [
    ...(s.setup_fail ? [`${s.setup_fail} setup_fail`] : []),
    ...(s.harness_fail ? [`${s.harness_fail} harness_fail`] : []),
  ];
  return (
    `${s.total} results: ${[`${s.pass} pass`, `${s.fail} fail`, `${s.warn} warn`, `${s.skip} skip`, `${s.dependency_fail} dependency_fail`, ...ours].join(', ')}; ` +
    `${s.matched} as expected, ${s.unmatched} not`
  );
}

/** `OK: all N results as expected`, or `NOT AS EXPECTED: n of N results`. */
export function verdictLine(report: RunReport, color = false): string {
  const s = report.summary;
  const [code, text] =
    s.unmatched === 0
      ? [GREEN, `OK: all ${s.total} results as expected`]
      : [RED, `NOT AS EXPECTED: ${s.unmatched} of ${s.total} results`];
  return color ? `${code}${text}${RESET}` : text;
}

export function renderSummary(report: RunReport, opts: SummaryOptions = {}): string {
  const width = opts.width ?? 100;
  const paint = (code: string, s: string) => (opts.color ? `${code}${s}${RESET}` : s);
  const lines: string[] = [verdictLine(report, Boolean(opts.color)), totalsLine(report)];
  if (report.agents) lines.push(...agentLines(report, width));
  else {
    const proxyLine = `proxies: ${report.proxies.map((p) => `${p.id} (${p.version}, ${p.runtime})`).join('; ')}`;
    if (proxyLine.length <= width) lines.push(proxyLine);
    else for (const p of report.proxies) lines.push(fit(`proxy ${p.id}: ${p.version} (${p.runtime})`, width));
  }
  lines.push('');

  // the matrix: one row per profile, one column per proxy, pass/fail/other counts
  const proxies = report.proxies.map((p) => p.id);
  const profiles = [...new Set(report.results.map((r) => r.profile))];
  const cell = (proxy: string, profile: string): { text: string; bad: boolean; fails: boolean } => {
    const rs = report.results.filter((r) => r.proxy === proxy && r.profile === profile);
    if (!rs.length) return { text: '-', bad: false, fails: false };
    const pass = rs.filter((r) => r.outcome === 'pass').length;
    const fail = rs.filter((r) => r.outcome === 'fail').length;
    const bad = rs.some((r) => !r.matched);
    return { text: `${pass}/${fail}/${rs.length - pass - fail}${bad ? '!' : ''}`, bad, fails: fail > 0 };
  };
  const firstWidth = Math.max(7, ...profiles.map((p) => p.length));
  const colWidth = Math.max(11, ...proxies.map((p) => p.length));
  const shown = Math.max(1, Math.floor((width - firstWidth - 2) / (colWidth + 2)));
  for (let start = 0; start < proxies.length; start += shown) {
    const cols = proxies.slice(start, start + shown);
    lines.push(['profile'.padEnd(firstWidth), ...cols.map((p) => p.padEnd(colWidth))].join('  ').trimEnd());
    for (const profile of profiles) {
      const cells = cols.map((p) => {
        const c = cell(p, profile);
        const text = c.text.padEnd(colWidth);
        return c.bad ? paint(RED, text) : c.fails ? paint(YELLOW, text) : text;
      });
      lines.push([profile.padEnd(firstWidth), ...cells].join('  ').trimEnd());
    }
    lines.push('');
  }
  lines.push(
    'cells: pass/fail/other (other: warn, skip, dependency_fail, ...); ! = a result not as expected',
  );

  const unexpected = report.results.filter((r) => !r.matched);
  if (unexpected.length) {
    const max = opts.maxUnexpected ?? 12;
    lines.push('', `Not as expected (${unexpected.length}):`);
    for (const r of unexpected.slice(0, max)) lines.push(...unexpectedLines(r, width));
    if (unexpected.length > max)
      lines.push(
        `  … and ${unexpected.length - max} more (--details for every result, --json for all of it)`,
      );
  }
  return `${lines.join('\n')}\n`;
}

const VERDICT_WORD = { go: 'GO', 'no-go': 'NO-GO', 'at-risk': 'AT RISK' } as const;

/**
 * The agent verdicts, first thing after the totals. One proxy: the proxy and its product, then a
 * line per agent with its reason. Several: a line per proxy naming the agents per verdict (the
 * reasons are in the JSON, HTML and JUnit reports, and in a one-proxy run).
 */
export function agentLines(report: RunReport, width = 100): string[] {
  const verdicts = report.agents?.verdicts ?? [];
  const product = (id: string) => {
    const p = report.proxies.find((x) => x.id === id)?.product;
    return p && p.id !== 'unknown' ? `${p.name}${p.version ? ` ${p.version}` : ''}` : 'product unknown';
  };
  const out: string[] = [];
  if (report.proxies.length === 1) {
    const p = report.proxies[0];
    if (!p) return out;
    out.push(fit(`proxy ${p.id}: ${p.version} (${p.runtime}); ${product(p.id)}`, width));
    const pad = Math.max(...verdicts.map((v) => v.agent.length), 5);
    for (const v of verdicts)
      out.push(fit(`  ${VERDICT_WORD[v.verdict].padEnd(7)} ${v.agent.padEnd(pad)}  ${v.reason}`, width));
    return out;
  }
  for (const p of report.proxies) {
    const mine = verdicts.filter((v) => v.proxy === p.id);
    const groups = (['no-go', 'at-risk', 'go'] as const)
      .map((w) => [w, mine.filter((v) => v.verdict === w).map((v) => v.agent)] as const)
      .filter(([, agents]) => agents.length)
      .map(([w, agents]) => `${VERDICT_WORD[w]} ${agents.join(', ')}`);
    out.push(fit(`proxy ${p.id} (${p.version}, ${p.runtime}): ${groups.join('; ') || 'no agents'}`, width));
  }
  return out;
}

function unexpectedLines(r: CheckResult, width: number): string[] {
  return [
    fit(
      `${r.id}: ${r.outcome}, expected ${r.expected}${r.expectedReason ? ` (${r.expectedReason})` : ''}`,
      width,
    ),
    fit(`  ${r.message}`, width),
    ...(r.remediation ? [fit(`  remedy: ${r.remediation}`, width)] : []),
  ];
}

/**
 * The whole of what `run` and `validate` print on stdout by default: the summary, or the full
 * table with `details`; remediation in full with `verbose` or when something is unexpected, else
 * one line saying where it is.
 */
export function renderRunOutput(
  report: RunReport,
  o: { details?: boolean; verbose?: boolean; color?: boolean; width?: number },
  renderTable: (r: RunReport, opts: { verbose?: boolean }) => string,
  renderRemediation: (r: RunReport['remediation']) => string,
): string {
  const body = o.details
    ? `${[verdictLine(report, Boolean(o.color)), ...agentLines(report, o.width ?? 160)].join('\n')}\n${renderTable(report, { verbose: Boolean(o.verbose) })}`
    : renderSummary(report, { ...(o.color ? { color: true } : {}), ...(o.width ? { width: o.width } : {}) });
  const fixes = report.remediation?.length ?? 0;
  const remedy =
    o.verbose || o.details || report.summary.unmatched > 0
      ? findingLines(report) + renderRemediation(report.remediation)
      : fixes
        ? `\nWhat to change: ${fixes} ${fixes === 1 ? 'proxy has' : 'proxies have'} fixes, all expected here; -v prints them.\n`
        : '';
  return body + staleDeviationLines(report) + remedy;
}

/** The findings by root cause, one line each (their remedies follow under "Remediation"). */
export function findingLines(report: RunReport): string {
  const findings = report.findings ?? [];
  if (!findings.length) return '';
  return `\nFindings (${findings.length}, by root cause)\n${findings.map((f) => `- [${f.severity}] ${f.proxy}: ${f.title}\n`).join('')}`;
}

/** One line per definition deviation that no longer happens (the run is red through its results). */
export function staleDeviationLines(report: RunReport): string {
  const stale = report.staleDeviations ?? [];
  if (!stale.length) return '';
  return `\n${stale.map((d) => `${d.at}: ${d.message}\n`).join('')}`;
}

/** Writes the run's stdout as renderRunOutput() makes it, for the terminal it goes to. */
export function printRunOutput(
  report: RunReport,
  o: { details?: boolean; verbose?: boolean },
  renderTable: (r: RunReport, opts: { verbose?: boolean }) => string,
  renderRemediation: (r: RunReport['remediation']) => string,
): void {
  const out = process.stdout;
  process.stdout.write(
    renderRunOutput(
      report,
      {
        details: Boolean(o.details),
        verbose: Boolean(o.verbose),
        color: wantColor(out),
        ...(out.columns ? { width: Math.min(out.columns, 160) } : {}),
      },
      renderTable,
      renderRemediation,
    ),
  );
}
