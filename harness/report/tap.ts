/**
 * TAP version 14 (what node-tap and its parser, tap-parser, read): one test point per result,
 * in report order, described by the result id.
 *
 * Mapping (see disposition.ts): `not ok` exactly for results that did not match their expectation
 * (the run's exit code is 1 then); `ok` for a pass and for a fail/warn the expectations predict
 * (the description says "fail, as expected"); `ok … # SKIP <outcome>: <message>` for a matched
 * outcome under which the check did not run (skip, dependency_fail, …). An unmatched skip is
 * `not ok` without the directive, so no consumer counts it as a mere skip. Every test point
 * carries a YAML diagnostics block: id, outcome, expected, expectedReason, message, remediation,
 * evidence, durationMs; strings are always double-quoted so no value can end the block early.
 */
import { stringify } from 'yaml';
import type { CheckResult, RunReport } from '../model.ts';
import { disposition, visibleControls } from './disposition.ts';

/** One line, with `#` and `\` escaped as TAP 14 asks for descriptions and directive text. */
function tapLine(s: string): string {
  return visibleControls(s)
    .replace(/[\r\n]+/g, ' ')
    .replace(/[\\#]/g, (c) => `\\${c}`);
}

function diagnostics(r: CheckResult): string[] {
  const diag: Record<string, unknown> = {
    id: r.id,
    outcome: r.outcome,
    expected: r.expected,
    ...(r.expectedReason !== undefined ? { expectedReason: r.expectedReason } : {}),
    matched: r.matched,
    message: r.message,
    ...(r.remediation ? { remediation: r.remediation } : {}),
    evidence: r.evidence ?? {},
    durationMs: r.durationMs,
  };
  const text = stringify(diag, {
    lineWidth: 0,
    defaultStringType: 'QUOTE_DOUBLE',
    defaultKeyType: 'PLAIN',
    doubleQuotedAsJSON: true,
  });
  return [
    '  ---',
    ...text
      .trimEnd()
      .split('\n')
      .map((l) => `  ${l}`),
    '  ...',
  ];
}

function testPoint(r: CheckResult, n: number): string[] {
  const d = disposition(r);
  const label =
    d === 'passed'
      ? ''
      : d === 'expected'
        ? ` (${r.outcome}, as expected)`
        : d === 'skipped'
          ? ''
          : ` (${r.outcome}, expected ${r.expected})`;
  const ok = d === 'failure' || d === 'error' ? 'not ok' : 'ok';
  const directive = d === 'skipped' ? ` # SKIP ${tapLine(`${r.outcome}: ${r.message}`)}` : '';
  return [`${ok} ${n} - ${tapLine(r.id + label)}${directive}`, ...diagnostics(r)];
}

export function renderTap(report: RunReport): string {
  const lines = [
    'TAP version 14',
    `# ${tapLine(`${report.tool.name} ${report.tool.version} (${report.schema}), ${report.startedAt} to ${report.finishedAt}`)}`,
    ...report.proxies.map(
      (p) =>
        `# ${tapLine(`proxy ${p.id}: kind ${p.kind}, runtime ${p.runtime}, ${p.version}${p.product && p.product.id !== 'unknown' ? `; ${p.product.name}${p.product.version ? ` ${p.product.version}` : ''}` : ''}`)}`,
    ),
    // the agent verdicts and the findings first, as comments (the test points follow)
    ...(report.agents?.verdicts ?? []).map(
      (v) => `# ${tapLine(`agent ${v.agent} via ${v.proxy}: ${v.verdict}: ${v.reason}`)}`,
    ),
    ...(report.findings ?? []).map((f) => `# ${tapLine(`finding [${f.severity}] ${f.proxy}: ${f.title}`)}`),
    `1..${report.results.length}`,
  ];
  report.results.forEach((r, i) => {
    lines.push(...testPoint(r, i + 1));
  });
  const matched = report.results.filter((r) => r.matched).length;
  lines.push(
    `# ${report.results.length} results, ${matched} as expected, ${report.results.length - matched} not`,
  );
  return lines.join('\n') + '\n';
}
