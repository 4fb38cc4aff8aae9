/**
 * What a result is expected to be: a proxy definition's first matching deviation, else what the
 * oracle predicts from its knobs (oracle.ts), else the check's own default; proxies that are not
 * definitions use `expectations/` rules. Deviations are watched: one whose results all came out as
 * the knobs predict no longer happens, and the run reports it (`staleDeviations`).
 */
import type { Outcome } from '../model.ts';
import type { ExpectationKey, ExpectationRule, LoadedDefinition, ScenarioSet } from '../scenarios.ts';
import { type OracleEnv, type OracleKey, predict } from './oracle.ts';

function matches<T>(value: T | undefined, pattern: T | T[] | undefined): boolean {
  if (pattern === undefined) return true;
  if (value === undefined) return false;
  return (Array.isArray(pattern) ? pattern : [pattern]).includes(value);
}

export function ruleMatches(r: ExpectationRule, key: ExpectationKey): boolean {
  const m = r.match;
  return (
    matches(key.profile, m.profile) &&
    matches(key.endpoint, m.endpoint) &&
    matches(key.check, m.check) &&
    matches(key.port, m.port) &&
    matches(key.kind, m.kind) &&
    matches(key.mustNotInspect, m.mustNotInspect) &&
    matches(key.pinned, m.pinned)
  );
}

/** A deviation's record in one run: what its results came out as, against what the knobs predict. */
interface DeviationUse {
  proxy: string;
  file: string;
  index: number;
  rule: ExpectationRule;
  results: number;
  /** Results whose outcome is what the knobs predict (and not what the deviation says). */
  asPredicted: number;
}

export interface StaleDeviation {
  proxy: string;
  /** `file: /deviations/N` */
  at: string;
  expect: Outcome;
  reason: string;
  results: number;
  message: string;
}

/** Watches the deviations a run's results matched, to report those that no longer happen. */
export class DeviationWatch {
  private readonly uses = new Map<string, DeviationUse>();

  note(def: LoadedDefinition, index: number, predicted: Outcome, actual: Outcome): void {
    const key = `${def.id}#${index}`;
    const rule = def.deviations?.[index] as ExpectationRule;
    let u = this.uses.get(key);
    if (!u) {
      u = { proxy: def.id, file: def.file, index, rule, results: 0, asPredicted: 0 };
      this.uses.set(key, u);
    }
    u.results++;
    if (actual === predicted && actual !== rule.expect) u.asPredicted++;
  }

  /** Deviations every matched result of which came out as the knobs predict. */
  stale(): StaleDeviation[] {
    return [...this.uses.values()]
      .filter((u) => u.results > 0 && u.asPredicted === u.results)
      .map((u) => ({
        proxy: u.proxy,
        at: `${u.file}: /deviations/${u.index}`,
        expect: u.rule.expect,
        reason: u.rule.reason,
        results: u.results,
        message: `deviation no longer happens: its ${u.results} result(s) came out as the knobs predict, not ${u.rule.expect}; remove it`,
      }));
  }
}

/**
 * The expected outcome of one result: a definition's deviation, else what its knobs predict, else
 * `fallback`. Proxies that are not definitions (adapters in code) use `expectations/` rules.
 */
export function expectedOutcome(
  set: ScenarioSet,
  key: OracleKey,
  env: OracleEnv,
  fallback: Outcome,
  actual: Outcome,
  watch: DeviationWatch,
): { expect: Outcome; reason?: string } {
  const def = set.proxies.get(key.proxy);
  if (!def) {
    const rule = set.expectations.get(key.proxy)?.rules.find((r) => ruleMatches(r, key));
    return rule ? { expect: rule.expect, reason: rule.reason } : { expect: fallback };
  }
  const predicted = predict(def, key, set, env) ?? { expect: fallback };
  const i = def.deviations?.findIndex((r) => ruleMatches(r, key)) ?? -1;
  if (i < 0) return predicted;
  watch.note(def, i, predicted.expect, actual);
  const rule = def.deviations?.[i] as ExpectationRule;
  return { expect: rule.expect, reason: rule.reason };
}
