/** Options shared by `run`, `validate`, `serve` and `lab`. */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { Option } from 'commander';
import { UsageError } from '../errors.ts';
import type { Runtime } from '../proxies/toolkit/runtime.ts';
import { DEFAULT_TIME_SCALE } from '../runner/run.ts';

export function timeScaleOption(): Option {
  return new Option(
    '--time-scale <factor>',
    'multiply every profile duration (15 s samples, 30 s keep-alives, 10 min sessions); 1 = real time',
  ).default(String(DEFAULT_TIME_SCALE));
}

export function parseTimeScale(value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0 || n > 100) {
    throw new UsageError(
      `--time-scale must be a number above 0 and at most 100 (1 = real time), not "${value}"`,
    );
  }
  return n;
}

export const TIMER_WAIT_HELP =
  "real seconds to wait when measuring the proxy's tunnel timers (a silent tunnel for its idle timer, a busy one for a lifetime cap), never scaled by --time-scale; default: as long as the replayed session runs, at least 10 s. tunnel-keepalive passes only when the wait covers the agent's silence between keep-alives and its whole session";

export function timerWaitOption(): Option {
  return new Option('--timer-wait <seconds>', TIMER_WAIT_HELP);
}

/** A positive number of seconds for `flag`, or undefined when not given. */
export function parseSeconds(value: string | undefined, flag: string): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!/^\s*\d+(\.\d+)?\s*$/.test(value) || !(n > 0) || !Number.isFinite(n))
    throw new UsageError(`${flag} must be a positive number of seconds, not "${value}"`);
  return n;
}

export function list(value: string): string[] {
  const items = value
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  if (!items.length) throw new UsageError(`expected a comma-separated list, got "${value}"`);
  return items;
}

/** A `--scenarios` directory: catalogs/ and profiles/ (proxies/ and expectations/ are optional). */
export function scenarioDir(dir: string): string {
  for (const sub of ['catalogs', 'profiles']) {
    if (!existsSync(join(dir, sub))) throw new UsageError(`--scenarios ${dir}: no ${sub}/ directory there`);
  }
  return dir;
}

const RUNTIMES: Runtime[] = ['auto', 'container', 'process'];

export function parseRuntime(value: string): Runtime {
  if (!(RUNTIMES as string[]).includes(value)) {
    throw new UsageError(`--runtime must be one of ${RUNTIMES.join(', ')}, not "${value}"`);
  }
  return value as Runtime;
}

export function labNetOption(): Option {
  return new Option('--lab-net <n>', 'second octet of the lab addresses 127.N.x.y').default(
    process.env.PROXYCHECK_LAB_NET ?? '77',
  );
}

/** `--jobs`: work items in flight at once, a whole number of at least 1. */
export function parseJobs(value: string): number {
  if (!/^\d+$/.test(value.trim()) || Number(value) < 1)
    throw new UsageError(`--jobs must be a whole number of at least 1, not "${value}"`);
  return Number(value);
}
