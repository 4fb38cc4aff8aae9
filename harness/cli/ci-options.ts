/**
 * The CI-facing options of `run` (--baseline, --update-baseline, --shard, --quiet) and of
 * `validate` (--quiet): everything they need before the run, the hooks they give runMatrix, and
 * what they print and exit with after it.
 */
import { Option } from 'commander';
import { UsageError } from '../errors.ts';
import type { RunReport } from '../model.ts';
import { Progress, progressMode, summaryLine } from '../report/progress.ts';
import { type BaselineRows, finishBaseline, prepareBaseline } from '../runner/baseline.ts';
import { type RunOptions, selectProfiles } from '../runner/run.ts';
import { formatShard, parseShard, type Selection, shardItems, workItems } from '../runner/shard.ts';
import type { ScenarioSet } from '../scenarios.ts';

export const quietOption = () =>
  new Option('-q, --quiet', 'no verdict table and no progress: only the summary line(s) and errors');

export const baselineOption = () =>
  new Option(
    '--baseline <file>',
    'compare outcomes with this baseline file (exit 1 if a row is worse or missing, 5 if only stale)',
  );

export const updateBaselineOption = () =>
  new Option('--update-baseline', "write this run's outcomes into the --baseline file (sorted, diffable)");

export const shardOption = () =>
  new Option('--shard <i/n>', 'run only part i of n of the proxy x profile matrix (parallel CI jobs)');

export interface CiRun {
  /** Spread into runMatrix's options. */
  runOptions: Pick<RunOptions, 'shard' | 'onResult' | 'onWorkItem'>;
  progress: Progress;
  /** After the run (the table, if any, is printed): quiet summary, baseline; gives the exit code. */
  finish(report: RunReport, opts: { stdoutTaken: boolean }): number;
}

/**
 * Reads and checks the options before anything starts: a bad --shard or baseline file is one
 * line and exit 2 without a lab.
 */
export function startCiRun(
  o: { quiet?: boolean; baseline?: string; updateBaseline?: boolean; shard?: string },
  run: { proxies: string[]; profiles: string[]; scenarios: ScenarioSet; version: string },
): CiRun {
  const { version } = run;
  const sel = {
    proxies: run.proxies,
    profiles: selectProfiles(run.scenarios, run.profiles).map((p) => p.id),
    allProfiles: run.profiles.length === 1 && run.profiles[0] === 'all',
  };
  const shard = o.shard === undefined ? undefined : parseShard(o.shard);
  if (o.updateBaseline && !o.baseline)
    throw new UsageError('--update-baseline needs --baseline FILE (the file to write)');
  const file = o.baseline;
  const update = Boolean(o.updateBaseline);
  const base: BaselineRows | undefined = file ? prepareBaseline(file, update) : undefined;
  const selection: Selection = { ...sel, ...(shard ? { shard } : {}) };
  const all = workItems(sel.proxies, sel.profiles);
  const mine = shardItems(all, shard);
  const progress = new Progress({
    stream: process.stderr,
    mode: progressMode(process.stderr, Boolean(o.quiet)),
    total: mine.length,
  });
  if (shard)
    progress.note(`shard ${formatShard(shard)}: ${mine.length} of ${all.length} proxy x profile work items`);
  return {
    runOptions: { ...(shard ? { shard } : {}), ...progress.hooks() },
    progress,
    finish(report, { stdoutTaken }) {
      let code = report.summary.unmatched === 0 ? 0 : 1;
      const out = stdoutTaken ? process.stderr : process.stdout;
      const baseline = file
        ? finishBaseline({ file, update, base, results: report.results, selection, version, code })
        : undefined;
      if (o.quiet) out.write(`${summaryLine(report)}\n${baseline ? `${baseline.summary}\n` : ''}`);
      else if (baseline) out.write(`\n${baseline.text}`);
      if (baseline) code = baseline.code;
      return code;
    },
  };
}

/** `--quiet`: the summary line only, on stdout unless a report took stdout. */
export function printQuietSummary(report: RunReport, stdoutTaken: boolean): void {
  (stdoutTaken ? process.stderr : process.stdout).write(`${summaryLine(report)}\n`);
}
