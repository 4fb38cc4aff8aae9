/**
 * How one result maps onto the pass/fail/skip vocabulary of CI report formats (JUnit, TAP, HTML).
 * One rule for every writer, so the formats agree with each other and with the exit code:
 * a report is red exactly when some result did not match its expectation (exit code 1).
 *
 * - `passed`: matched, and the check ran and passed.
 * - `expected`: matched, the check ran and judged `fail` or `warn`, as the expectation says
 *   (e.g. chain-mitm intercepts TLS): green, with the outcome and its reason noted.
 * - `skipped`: matched, and the check did not run (`skip`, `dependency_fail`, `setup_fail`,
 *   `harness_fail` that were expected): never shown as a pass.
 * - `failure`: not matched, in either direction (a fail where pass was expected, or a pass where
 *   the expectation says fail: the expectation is stale).
 * - `error`: not matched, and the outcome is ours (`setup_fail`, `harness_fail`), not the proxy's.
 */
import { CHECKS } from '../checks/index.ts';
import type { CheckResult, Outcome, ProxyInfo, RunReport } from '../model.ts';

export type Disposition = 'passed' | 'expected' | 'skipped' | 'failure' | 'error';

/** Outcomes meaning the check did not judge the proxy. */
export const DID_NOT_RUN: ReadonlySet<Outcome> = new Set<Outcome>([
  'skip',
  'dependency_fail',
  'setup_fail',
  'harness_fail',
]);

/** Outcomes that are failures of proxycheck's own side (lab, proxies we start, our code). */
export const OUR_FAULT: ReadonlySet<Outcome> = new Set<Outcome>(['setup_fail', 'harness_fail']);

export function disposition(r: CheckResult): Disposition {
  if (!r.matched) return OUR_FAULT.has(r.outcome) ? 'error' : 'failure';
  if (DID_NOT_RUN.has(r.outcome)) return 'skipped';
  return r.outcome === 'pass' ? 'passed' : 'expected';
}

/** The check's title from harness/checks/definitions.ts, or its id for a check we do not know. */
export function checkTitle(check: string): string {
  return CHECKS[check]?.title ?? check;
}

/** "fail, expected pass" / "fail, as expected (reason)": one line for any writer. */
export function expectationLine(r: CheckResult): string {
  if (r.matched) return `${r.outcome}, as expected${r.expectedReason ? `: ${r.expectedReason}` : ''}`;
  return `${r.outcome}, expected ${r.expected}${r.expectedReason ? ` (${r.expectedReason})` : ''}`;
}

/** Evidence as indented JSON (control characters come out as \uXXXX escapes). */
export function evidenceJson(r: CheckResult): string {
  return JSON.stringify(r.evidence ?? {}, null, 2);
}

/** Replaces characters no text format should carry raw (C0/C1 controls but tab and newline, lone surrogates). */
export function visibleControls(s: string): string {
  return s.replace(
    // biome-ignore lint/suspicious/noControlCharactersInRegex: this is the control-character filter
    /[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f\ufffe\uffff]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
}

/** Proxies in report order, then any proxy that has results but no entry in `proxies`. */
export function proxyOrder(report: RunReport): ProxyInfo[] {
  const out = [...report.proxies];
  for (const r of report.results) {
    if (!out.some((p) => p.id === r.proxy))
      out.push({ id: r.proxy, kind: 'unknown', runtime: 'unknown', version: 'unknown' });
  }
  return out;
}
