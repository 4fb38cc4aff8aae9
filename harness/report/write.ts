/**
 * The report options shared by `run` and `validate`: --json, --junit, --tap, --html FILE, where
 * `-` means stdout (then the verdict table is not printed, so stdout carries only the report).
 * Every target is checked before the lab starts, so a typo in a path costs nothing: a file we
 * cannot write is one line and exit 2.
 */
import { closeSync, existsSync, openSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { UsageError } from '../errors.ts';
import type { RunReport } from '../model.ts';
import { renderHtml } from './html.ts';
import { renderJunit } from './junit.ts';
import { renderTap } from './tap.ts';

export const REPORT_FORMATS = {
  json: {
    help: 'write the full report (schema proxycheck/result@2) to FILE ("-" for stdout)',
    render: (r: RunReport) => JSON.stringify(r, null, 2) + '\n',
  },
  junit: {
    help: 'write JUnit XML to FILE: a testsuite per proxy, a testcase per result ("-" for stdout)',
    render: renderJunit,
  },
  tap: {
    help: 'write TAP version 14 to FILE: a test point per result ("-" for stdout)',
    render: renderTap,
  },
  html: {
    help: 'write a self-contained HTML page (summary, matrix, evidence) to FILE ("-" for stdout)',
    render: renderHtml,
  },
} as const;

export type ReportFormat = keyof typeof REPORT_FORMATS;

export interface ReportPlan {
  targets: Array<{ format: ReportFormat; file: string }>;
  /** A report goes to stdout, so nothing else may be printed there. */
  stdout: boolean;
}

/** Can we create or overwrite `file`? Probed by opening it for append (no data written). */
function writeProblem(file: string): string | undefined {
  if (existsSync(file) && statSync(file).isDirectory()) return 'is a directory';
  const existed = existsSync(file);
  try {
    closeSync(openSync(file, 'a'));
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    return e.code === 'ENOENT' ? 'its directory does not exist' : (e.code ?? e.message);
  } finally {
    if (!existed && existsSync(file)) unlinkSync(file);
  }
  return undefined;
}

/** Reads the report options of a parsed command and checks every target; throws UsageError. */
export function planReports(opts: Record<string, unknown>): ReportPlan {
  const plan: ReportPlan = { targets: [], stdout: false };
  const seen = new Map<string, ReportFormat>();
  for (const format of Object.keys(REPORT_FORMATS) as ReportFormat[]) {
    const file = opts[format];
    if (file === undefined) continue;
    if (typeof file !== 'string' || file === '') throw new UsageError(`--${format} needs a file name`);
    const key = file === '-' ? '-' : resolve(file);
    const other = seen.get(key);
    if (other)
      throw new UsageError(
        `--${other} and --${format} both write to ${file === '-' ? 'stdout' : file}; give each its own file`,
      );
    seen.set(key, format);
    if (file === '-') plan.stdout = true;
    else {
      const problem = writeProblem(file);
      if (problem) throw new UsageError(`--${format} ${file}: cannot write the report there (${problem})`);
    }
    plan.targets.push({ format, file });
  }
  return plan;
}

/** Writes every planned report; stdout ones through process.stdout. */
export function writeReports(plan: ReportPlan, report: RunReport): void {
  for (const { format, file } of plan.targets) {
    const text = REPORT_FORMATS[format].render(report);
    if (file === '-') {
      process.stdout.write(text);
      continue;
    }
    try {
      writeFileSync(file, text);
    } catch (err) {
      throw new UsageError(
        `--${format} ${file}: cannot write the report (${(err as NodeJS.ErrnoException).code ?? 'error'})`,
      );
    }
  }
}
