/**
 * Progress on stderr while the matrix runs (the verdict table stays on stdout):
 * - tty: one line, rewritten in place (`\r` + clear to end of line), with a bar, proxy × profile
 *   work items done/total and pass/fail/other counts; cleared when the run ends and on
 *   Ctrl-C/SIGTERM, so the terminal is never left with half a line;
 * - plain (stderr is not a terminal, e.g. CI logs): one line per finished proxy × profile;
 * - quiet: nothing.
 */
import type { CheckResult, RunReport } from '../model.ts';
import { totalsLine } from './summary.ts';

export type ProgressMode = 'tty' | 'plain' | 'quiet';

export interface ProgressStream {
  write(chunk: string): unknown;
  isTTY?: boolean;
  columns?: number;
}

export function progressMode(stream: ProgressStream, quiet: boolean): ProgressMode {
  if (quiet) return 'quiet';
  return stream.isTTY ? 'tty' : 'plain';
}

interface Counts {
  results: number;
  pass: number;
  fail: number;
  other: number;
  unexpected: number;
}

const zero = (): Counts => ({ results: 0, pass: 0, fail: 0, other: 0, unexpected: 0 });

function add(c: Counts, r: CheckResult): void {
  c.results += 1;
  if (r.outcome === 'pass') c.pass += 1;
  else if (r.outcome === 'fail') c.fail += 1;
  else c.other += 1;
  if (!r.matched) c.unexpected += 1;
}

function counts(c: Counts): string {
  return `${c.results} results: ${c.pass} pass, ${c.fail} fail, ${c.other} other; ${c.unexpected} unexpected`;
}

const CLEAR_LINE = '\r\x1b[K';
const BAR_WIDTH = 20;

export interface ProgressOptions {
  stream: ProgressStream;
  mode: ProgressMode;
  /** proxy × profile work items this run will do. */
  total: number;
  /** Redraw the tty line this often, so the elapsed time moves while a proxy starts; 0: never. */
  tickMs?: number;
  now?: () => number;
}

export class Progress {
  readonly mode: ProgressMode;
  private readonly stream: ProgressStream;
  private readonly total: number;
  private readonly now: () => number;
  private readonly started: number;
  private done = 0;
  private all = zero();
  /** Work items in flight (several at once for a proxy that is not there), by proxy/profile. */
  private readonly items = new Map<string, { counts: Counts; started: number }>();
  private current = '';
  private drawn = false;
  private shown = '';
  private stopped = false;
  private timer: NodeJS.Timeout | undefined;
  private readonly onSignal = () => this.stop();
  private readonly onExit = () => this.clear();

  constructor(opts: ProgressOptions) {
    this.mode = opts.mode;
    this.stream = opts.stream;
    this.total = opts.total;
    this.now = opts.now ?? Date.now;
    this.started = this.now();
    if (this.mode === 'tty') {
      // Ahead of the lifecycle's own handler, which prints its "stopping" line on stderr.
      process.prependListener('SIGINT', this.onSignal);
      process.prependListener('SIGTERM', this.onSignal);
      process.on('exit', this.onExit);
      const tick = opts.tickMs ?? 1000;
      if (tick > 0) {
        this.timer = setInterval(() => this.draw(), tick);
        this.timer.unref();
      }
      this.draw();
    }
  }

  /** A proxy × profile work item starts (its proxy is up). */
  itemStart(proxy: string, profile: string): void {
    this.items.set(`${proxy}/${profile}`, { counts: zero(), started: this.now() });
    this.current = `${proxy}/${profile}`;
    this.draw();
  }

  result(r: CheckResult): void {
    add(this.all, r);
    const item = this.items.get(`${r.proxy}/${r.profile}`);
    if (item) add(item.counts, r);
    this.draw();
  }

  /** A proxy × profile work item is done: all its results were reported. */
  itemDone(proxy: string, profile: string): void {
    this.done += 1;
    const key = `${proxy}/${profile}`;
    const item = this.items.get(key) ?? { counts: zero(), started: this.now() };
    this.items.delete(key);
    if (this.mode === 'plain' && !this.stopped) {
      const secs = ((this.now() - item.started) / 1000).toFixed(1);
      this.stream.write(
        `proxycheck: [${this.done}/${this.total}] ${key}: ${counts(item.counts)} (${secs} s)\n`,
      );
    }
    this.current = '';
    this.draw();
  }

  /** The callbacks runMatrix takes (`onResult`, `onWorkItem`). */
  hooks(): {
    onResult: (r: CheckResult) => void;
    onWorkItem: (phase: 'start' | 'done', proxy: string, profile: string) => void;
  } {
    return {
      onResult: (r) => this.result(r),
      onWorkItem: (phase, proxy, profile) =>
        phase === 'start' ? this.itemStart(proxy, profile) : this.itemDone(proxy, profile),
    };
  }

  /** A line of its own above the progress line (not in quiet mode), e.g. which shard this is. */
  note(text: string): void {
    if (this.mode === 'quiet' || this.stopped) return;
    this.clear();
    this.stream.write(`proxycheck: ${text}\n`);
    this.draw();
  }

  /** The tty line as drawn now (without control characters), cut to the terminal width. */
  line(): string {
    const frac = this.total ? Math.min(1, this.done / this.total) : 1;
    const full = Math.round(frac * BAR_WIDTH);
    const bar = `[${'#'.repeat(full)}${'-'.repeat(BAR_WIDTH - full)}]`;
    const secs = Math.floor((this.now() - this.started) / 1000);
    const parts = [`proxycheck ${bar} ${this.done}/${this.total}`, counts(this.all), `${secs}s`];
    if (this.current) parts.push(this.current);
    const text = parts.join(' | ');
    // Never wrap: a wrapped line cannot be redrawn in place. A pty may report 0 columns: take 80.
    const width = (this.stream.columns || 80) - 1;
    return text.length > width ? text.slice(0, Math.max(0, width)) : text;
  }

  private draw(): void {
    if (this.mode !== 'tty' || this.stopped) return;
    const line = this.line();
    if (this.drawn && line === this.shown) return;
    this.stream.write(CLEAR_LINE + line);
    this.shown = line;
    this.drawn = true;
  }

  /** Clears the tty line (safe to call more than once). */
  clear(): void {
    if (this.drawn) this.stream.write(CLEAR_LINE);
    this.drawn = false;
  }

  /** The run is over, failed or was interrupted: clear the line, draw nothing more. */
  stop(): void {
    if (this.stopped) return;
    this.clear();
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    process.removeListener('SIGINT', this.onSignal);
    process.removeListener('SIGTERM', this.onSignal);
    process.removeListener('exit', this.onExit);
  }
}

/** The final summary line of the verdict table ("N results: …; M as expected, K not"). */
export function summaryLine(report: RunReport): string {
  return totalsLine(report);
}
