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
