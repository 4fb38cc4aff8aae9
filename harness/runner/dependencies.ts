/**
 * The one rule for `dependency_fail`: a check the kind did not get to is `dependency_fail` when a
 * dependency (harness/checks, `dependsOn`) did not pass, naming it, and `harness_fail` (our bug)
 * when none explains it. What the kind judged stands. Only dependencies the exchange reports count; `{ anyOf }` needs one of its reported members to have passed or warned (the agent's
 * route: the tunnel, a forwarded request, the failover port or the auto-detect fallback).
 */
import type { KindVerdict, KindVerdicts } from '../agent/kinds/types.ts';
import { checkDefinition, type Dependency } from '../checks/index.ts';
import type { Outcome } from '../model.ts';

const WENT_THROUGH: Outcome[] = ['pass', 'warn'];
/** A dependency that is skipped because it does not apply (pinning of an unpinned host) is no obstacle. */
const NO_OBSTACLE: Outcome[] = ['pass', 'warn', 'skip'];

/** The reported check that stops `dep`, or undefined when it holds. */
function blocker(dep: Dependency, reported: Set<string>, final: KindVerdicts): string | undefined {
  if (typeof dep === 'string') {
    if (!reported.has(dep)) return undefined;
    const v = final.get(dep);
    return v && NO_OBSTACLE.includes(v.outcome) ? undefined : dep;
  }
  const members = dep.anyOf.filter((id) => reported.has(id));
  if (!members.length) return undefined;
  if (members.some((id) => WENT_THROUGH.includes(final.get(id)?.outcome as Outcome))) return undefined;
  // name the last route tried that did not merely not apply (the failover after a refused CONNECT)
  return [...members].reverse().find((id) => final.get(id)?.outcome !== 'skip') ?? members[0];
}

/**
 * The verdicts of `checks` (in report order, which puts every dependency first) with the rule
 * applied; a check the kind left out with nothing to explain it is our bug (`harness_fail`).
 */
export function applyDependencies(kindId: string, checks: string[], verdicts: KindVerdicts): KindVerdicts {
  const reported = new Set(checks);
  const final: KindVerdicts = new Map();
  for (const check of checks) {
    const def = checkDefinition(check);
    const given = verdicts.get(check);
    const by = def.dependsOn.map((d) => blocker(d, reported, final)).find((b) => b !== undefined);
    // a check that does not apply here by catalog data stays so, whatever happened before it
    // what the kind judged from a real observation stands (an agent that trusts the inspection CA
    // still talks through an interception the vendor forbids); only what it did not get to is derived
    if (by !== undefined && given === undefined) {
      const cause = final.get(by);
      const v: KindVerdict = {
        outcome: 'dependency_fail',
        message: `not run: ${checkDefinition(by).blocks} (${by} ${cause?.outcome ?? 'not reported'}${cause ? `: ${cause.message}` : ''})`,
        evidence: { dependsOn: by },
        durationMs: 0,
        // a route policy reports later checks under the endpoint the agent ended up on
        ...(cause?.endpoint ? { endpoint: cause.endpoint } : {}),
      };
      final.set(check, v);
    } else {
      final.set(
        check,
        given ?? {
          outcome: 'harness_fail',
          message: `harness error: the ${kindId} exchange reported no verdict for ${check}`,
          evidence: {},
          durationMs: 0,
        },
      );
    }
  }
  return final;
}
