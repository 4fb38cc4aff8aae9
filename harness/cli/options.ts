/** Options shared by `run` and `validate`. */
import { Option } from 'commander';
import { UsageError } from '../errors.ts';
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
