/**
 * Regression baseline: a committed file holding the outcome of every result id, compared with a
 * run (`run --baseline FILE`) or rewritten from it (`--update-baseline`).
 *
 * The file is YAML, written so that it diffs well: a fixed header, then one line per result id
 * (`<proxy>/<profile>/<endpoint>/<check>: <outcome>`) sorted by id in code-unit order. No dates:
 * the same outcomes always give the same bytes. Ids are opaque here apart from their first two
 * segments (proxy, profile), which decide whether a row belongs to a run's selection.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { UsageError } from '../errors.ts';
import { OUTCOMES, type Outcome } from '../model.ts';
import { describeSelection, type Selection, selectionScope } from './shard.ts';

export const BASELINE_SCHEMA = 'proxycheck/baseline@1';

/**
 * Exit code of `run --baseline` when every result matched its expectation and no row is worse
 * than the baseline or missing, but the baseline differs (improved, changed or new rows): stale.
 */
export const EXIT_BASELINE_STALE = 5;

/** result id → outcome */
export type BaselineRows = Map<string, Outcome>;

export interface ResultLike {
  id: string;
  outcome: Outcome;
}

/**
 * How bad an outcome is. Higher is worse; a different outcome of equal rank is a "change", not a
 * regression: pass/skip (fine or not applicable), warn, fail/dependency_fail (the proxy broke the
 * agent), setup_fail/harness_fail (nothing was judged at all).
 */
const RANK: Record<string, number> = {
  pass: 0,
  skip: 0,
  warn: 1,
  fail: 2,
  dependency_fail: 2,
  setup_fail: 3,
  harness_fail: 3,
};
/** An outcome this table does not know yet ranks as a failure. */
const rank = (o: Outcome): number => RANK[o] ?? 2;

function byCodeUnits(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Ids with nothing YAML could read differently stay plain; anything else is double-quoted. */
function yamlKey(id: string): string {
  return /^[A-Za-z0-9_./-][A-Za-z0-9_./:@+#-]*$/.test(id) && !id.endsWith(':') ? id : JSON.stringify(id);
}

export function formatBaseline(rows: BaselineRows, version: string): string {
  const ids = [...rows.keys()].sort(byCodeUnits);
  const lines = [
    '# proxycheck regression baseline: the outcome of every result id, one line each, sorted by id.',
    '# Compare a run with it: proxycheck run --baseline FILE. Rewrite it from a run: add --update-baseline.',
    `# Written by proxycheck ${version}.`,
    `schema: ${BASELINE_SCHEMA}`,
  ];
  if (!ids.length) lines.push('results: {}');
  else lines.push('results:', ...ids.map((id) => `  ${yamlKey(id)}: ${rows.get(id)}`));
  return lines.join('\n') + '\n';
}

export function parseBaseline(text: string, file: string): BaselineRows {
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (err) {
    const first = ((err as Error).message.split('\n')[0] ?? '').trim().replace(/:$/, '');
    throw new UsageError(`--baseline ${file}: not valid YAML: ${first}`);
  }
  const bad = (what: string) =>
    new UsageError(`--baseline ${file}: not a proxycheck baseline (${BASELINE_SCHEMA}): ${what}`);
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) throw bad('expected a mapping');
  const d = doc as Record<string, unknown>;
  const extra = Object.keys(d).filter((k) => k !== 'schema' && k !== 'results');
  if (extra.length) throw bad(`unknown key "${extra[0]}"`);
  if (d.schema !== BASELINE_SCHEMA) throw bad(`schema is ${JSON.stringify(d.schema ?? null)}`);
  const results = d.results;
  if (typeof results !== 'object' || results === null || Array.isArray(results))
    throw bad('"results" must be a mapping of result id to outcome');
  const rows: BaselineRows = new Map();
  for (const [id, outcome] of Object.entries(results)) {
    const parts = id.split('/');
    if (parts.length < 3 || parts.some((s) => s === ''))
      throw bad(`"${id}" is not a result id (<proxy>/<profile>/<endpoint>/<check>)`);
    if (!(OUTCOMES as readonly unknown[]).includes(outcome))
      throw bad(`${id}: outcome ${JSON.stringify(outcome)} is not one of ${OUTCOMES.join(', ')}`);
    rows.set(id, outcome as Outcome);
  }
  return rows;
}

/**
 * Reads FILE. A missing file is an error, unless `creating` (for `--update-baseline`), which then
 * gives undefined. A file that exists but is not a baseline is always an error: --update-baseline
 * does not overwrite something else that happens to sit at that path.
 */
export function readBaseline(file: string, opts: { creating?: boolean } = {}): BaselineRows | undefined {
  if (!existsSync(file)) {
    if (opts.creating) return undefined;
    throw new UsageError(`--baseline ${file}: no such file (write one with --update-baseline)`);
  }
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new UsageError(`--baseline ${file}: ${(err as NodeJS.ErrnoException).code ?? 'unreadable'}`);
  }
  return parseBaseline(text, file);
}

export interface Change {
  id: string;
  was: Outcome;
  now: Outcome;
}

export interface BaselineDiff {
  /** Worse than the baseline (pass → fail, fail → setup_fail, …). */
  regressed: Change[];
  /** Better than the baseline (fail → pass, …): the baseline is stale. */
  improved: Change[];
  /** Another outcome of the same rank (pass ↔ skip, fail ↔ dependency_fail, …). */
  changed: Change[];
  /** In the baseline and in this run's selection, but not produced by the run. */
  missing: Array<{ id: string; was: Outcome }>;
  /** Produced by the run, not in the baseline. */
  added: Array<{ id: string; now: Outcome }>;
  unchanged: number;
  /** Baseline rows outside this run's selection or shard: not compared. */
  notCompared: number;
}

export function compareBaseline(
  base: BaselineRows,
  results: ResultLike[],
  inScope: (id: string) => boolean,
): BaselineDiff {
  const diff: BaselineDiff = {
    regressed: [],
    improved: [],
    changed: [],
    missing: [],
    added: [],
    unchanged: 0,
    notCompared: 0,
  };
  const seen = new Set<string>();
  for (const r of [...results].sort((a, b) => byCodeUnits(a.id, b.id))) {
    seen.add(r.id);
    const was = base.get(r.id);
    if (was === undefined) diff.added.push({ id: r.id, now: r.outcome });
    else if (was === r.outcome) diff.unchanged += 1;
    else {
      const c = { id: r.id, was, now: r.outcome };
      const d = rank(r.outcome) - rank(was);
      (d > 0 ? diff.regressed : d < 0 ? diff.improved : diff.changed).push(c);
    }
  }
  for (const id of [...base.keys()].sort(byCodeUnits)) {
    if (seen.has(id)) continue;
    if (inScope(id)) diff.missing.push({ id, was: base.get(id) as Outcome });
    else diff.notCompared += 1;
  }
  return diff;
}

/** The rows of FILE after `--update-baseline`: this run's rows replace every row in its scope. */
export function mergeBaseline(
  base: BaselineRows | undefined,
  results: ResultLike[],
  inScope: (id: string) => boolean,
): BaselineRows {
  const rows: BaselineRows = new Map();
  for (const [id, outcome] of base ?? []) if (!inScope(id)) rows.set(id, outcome);
  for (const r of results) rows.set(r.id, r.outcome);
  return rows;
}

export type BaselineVerdict = 'same' | 'stale' | 'regressed';

/** regressed: a row got worse or went missing; stale: only improvements, changes or new rows. */
export function baselineVerdict(d: BaselineDiff): BaselineVerdict {
  if (d.regressed.length || d.missing.length) return 'regressed';
  if (d.improved.length || d.changed.length || d.added.length) return 'stale';
  return 'same';
}

export function baselineSummary(d: BaselineDiff): string {
  return (
    `${d.regressed.length} regressed, ${d.improved.length} improved, ${d.changed.length} changed, ` +
    `${d.missing.length} missing, ${d.added.length} new, ${d.unchanged} unchanged` +
    (d.notCompared ? `; ${d.notCompared} baseline rows outside this selection not compared` : '')
  );
}

/** The comparison as printed after the verdict table: one line per differing row, then a verdict. */
export function renderBaselineDiff(
  d: BaselineDiff,
  opts: { file: string; selection: string; tail?: string },
): string {
  const lines: string[] = [];
  const label = (s: string) => s.padEnd(9);
  for (const c of d.regressed) lines.push(`  ${label('regressed')} ${c.id}: ${c.was} -> ${c.now}`);
  for (const m of d.missing)
    lines.push(`  ${label('missing')} ${m.id}: ${m.was} in the baseline, not produced by this run`);
  for (const c of d.improved) lines.push(`  ${label('improved')} ${c.id}: ${c.was} -> ${c.now}`);
  for (const c of d.changed) lines.push(`  ${label('changed')} ${c.id}: ${c.was} -> ${c.now}`);
  for (const a of d.added) lines.push(`  ${label('new')} ${a.id}: ${a.now}, not in the baseline`);
  const head = `baseline ${opts.file} (${opts.selection}): ${baselineSummary(d)}`;
  const verdict = baselineVerdict(d);
  const tail =
    opts.tail ??
    (verdict === 'regressed'
      ? 'baseline: REGRESSED (rows worse than the baseline, or missing from this run)'
      : verdict === 'stale'
        ? 'baseline: stale, nothing worse (review the rows above, then rewrite it with --update-baseline)'
        : 'baseline: same outcomes');
  return [head, ...lines, tail].join('\n') + '\n';
}

/** Writes FILE only when its bytes change; says whether they did. */
export function writeBaseline(file: string, rows: BaselineRows, version: string): boolean {
  const text = formatBaseline(rows, version);
  if (existsSync(file) && readFileSync(file, 'utf8') === text) return false;
  try {
    writeFileSync(file, text);
  } catch (err) {
    throw new UsageError(`--baseline ${file}: cannot write: ${(err as NodeJS.ErrnoException).code ?? err}`);
  }
  return true;
}

/** Before the run: reads FILE, or (for --update-baseline) checks that it can be created. */
export function prepareBaseline(file: string, update: boolean): BaselineRows | undefined {
  const dir = dirname(resolve(file));
  if (update && !existsSync(file) && !existsSync(dir))
    throw new UsageError(`--baseline ${file}: directory ${dir} does not exist`);
  return readBaseline(file, { creating: update });
}

/**
 * After the run: compares it with the baseline, or rewrites the baseline from it. Gives the text to
 * print, its one-line summary, and the exit code given `code` (0 or 1, from the expectations).
 * Comparing: 1 if a row regressed or went missing, else 5 (EXIT_BASELINE_STALE) if the baseline
 * differs and `code` is 0, else `code`. Updating: `code` (the file now agrees with the run).
 */
export function finishBaseline(opts: {
  file: string;
  update: boolean;
  base: BaselineRows | undefined;
  results: ResultLike[];
  selection: Selection;
  version: string;
  code: number;
}): { text: string; summary: string; code: number } {
  const inScope = selectionScope(opts.selection);
  const selection = describeSelection(opts.selection);
  const diff = compareBaseline(opts.base ?? new Map(), opts.results, inScope);
  if (opts.update) {
    const rows = mergeBaseline(opts.base, opts.results, inScope);
    const written = writeBaseline(opts.file, rows, opts.version);
    const kept = rows.size - opts.results.length;
    const summary =
      `baseline ${opts.file} ${opts.base ? (written ? 'updated' : 'unchanged') : 'written'}: ` +
      `${rows.size} rows (${opts.results.length} from this run${kept ? `, ${kept} kept from outside this selection` : ''})`;
    const text = opts.base
      ? renderBaselineDiff(diff, { file: opts.file, selection, tail: summary })
      : `${summary}\n`;
    return { text, summary, code: opts.code };
  }
  const verdict = baselineVerdict(diff);
  const code =
    verdict === 'regressed' ? 1 : verdict === 'stale' && opts.code === 0 ? EXIT_BASELINE_STALE : opts.code;
  return {
    text: renderBaselineDiff(diff, { file: opts.file, selection }),
    summary: `baseline ${opts.file} (${selection}): ${baselineSummary(diff)}`,
    code,
  };
}
