/**
 * The one rule for dependency_fail (harness/runner/dependencies.ts), on verdict maps as kinds
 * return them: a failed dependency stops its dependents whatever the kind said; the route is any
 * one of connect, forward, failover, fallback; a check that does not apply stays skip; a kind's own
 * "not run" with its reason is kept; a check nobody reported is our bug.
 */
import t from 'tap';
import type { KindVerdict, KindVerdicts } from '../harness/agent/kinds/types.ts';
import { notApplicable, notRun } from '../harness/checks/types.ts';
import type { Outcome } from '../harness/model.ts';
import { applyDependencies } from '../harness/runner/dependencies.ts';

const v = (outcome: Outcome, message: string = outcome): KindVerdict => ({
  outcome,
  message,
  evidence: {},
  durationMs: 1,
});
const verdicts = (o: Record<string, KindVerdict>): KindVerdicts => new Map(Object.entries(o));
const outcomes = (m: KindVerdicts) => Object.fromEntries([...m].map(([k, x]) => [k, x.outcome]));

t.test('a failed CONNECT stops everything the kind did not get to, naming it', async (t) => {
  const out = applyDependencies(
    'https',
    ['connect', 'tls-interception', 'pinning', 'payload', 'headers'],
    verdicts({ connect: v('fail', 'CONNECT x answered "403 Forbidden"') }),
  );
  t.same(outcomes(out), {
    connect: 'fail',
    'tls-interception': 'dependency_fail',
    pinning: 'dependency_fail',
    payload: 'dependency_fail',
    headers: 'dependency_fail',
  });
  t.match(
    out.get('payload')?.message,
    /not run: the CONNECT tunnel was not established \(connect fail: CONNECT x answered "403 Forbidden"\)/,
  );
  t.equal(out.get('payload')?.evidence.dependsOn, 'connect');
});

t.test('the route is any one of its ways: a failover that worked carries the session', async (t) => {
  const ok = applyDependencies(
    'mqtt',
    ['connect', 'failover', 'tls-interception', 'payload'],
    verdicts({ connect: v('fail'), failover: v('pass'), 'tls-interception': v('pass'), payload: v('pass') }),
  );
  t.same(outcomes(ok), { connect: 'fail', failover: 'pass', 'tls-interception': 'pass', payload: 'pass' });
  const both = applyDependencies(
    'mqtt',
    ['connect', 'failover', 'tls-interception', 'payload'],
    verdicts({ connect: v('fail'), failover: { ...v('fail'), endpoint: 'h:443' } }),
  );
  t.equal(both.get('payload')?.outcome, 'dependency_fail');
  t.equal(both.get('payload')?.evidence.dependsOn, 'failover', 'names the last way tried');
  t.equal(both.get('payload')?.endpoint, 'h:443', 'reported where the agent ended up');
  const notTried = applyDependencies(
    'websocket',
    ['connect', 'fallback', 'protocol'],
    verdicts({ connect: v('fail'), fallback: notApplicable('the proxy was reachable') }),
  );
  t.equal(
    notTried.get('protocol')?.evidence.dependsOn,
    'connect',
    'a fallback that did not apply is not blamed',
  );
});

t.test('what the kind judged stands, even after a failed dependency', async (t) => {
  // an agent that trusts the inspection CA talks through an interception the vendor forbids
  const out = applyDependencies(
    'cira',
    ['connect', 'tls-interception', 'mtls', 'protocol', 'tunnel-keepalive'],
    verdicts({
      connect: v('pass'),
      'tls-interception': v('fail'),
      mtls: v('fail'),
      protocol: v('fail', 'APF broke'),
    }),
  );
  t.same(outcomes(out), {
    connect: 'pass',
    'tls-interception': 'fail',
    mtls: 'fail',
    protocol: 'fail',
    'tunnel-keepalive': 'dependency_fail',
  });
  t.equal(
    out.get('tunnel-keepalive')?.evidence.dependsOn,
    'tls-interception',
    'the first failed dependency is named',
  );
});

t.test('warn and not-applicable skips are no obstacle; a not-applicable check stays skip', async (t) => {
  const out = applyDependencies(
    'https',
    ['connect', 'tls-interception', 'pinning', 'payload'],
    verdicts({
      connect: v('pass'),
      'tls-interception': v('warn'),
      pinning: notApplicable('the agent does not pin this endpoint'),
      payload: v('pass'),
    }),
  );
  t.same(outcomes(out), { connect: 'pass', 'tls-interception': 'warn', pinning: 'skip', payload: 'pass' });
  const refused = applyDependencies(
    'probe',
    ['connect', 'tls-interception', 'pinning'],
    verdicts({ connect: v('fail'), pinning: notApplicable('not pinned') }),
  );
  t.equal(refused.get('pinning')?.outcome, 'skip');
  t.equal(refused.get('tls-interception')?.outcome, 'dependency_fail');
});

t.test("a kind's own not-run reason is kept; a strict client's rejection stops the rest", async (t) => {
  const out = applyDependencies(
    'https',
    ['connect', 'tls-interception', 'pinning', 'payload'],
    verdicts({
      connect: v('pass'),
      'tls-interception': v('warn'),
      pinning: notApplicable('n/a'),
      payload: notRun(
        'the agent refused the TLS session (certificate chain not trusted)',
        'tls-interception',
      ),
    }),
  );
  t.match(out.get('payload')?.message, /refused the TLS session/);
  const strict = applyDependencies(
    'cira',
    ['connect', 'connect-response', 'tls-interception', 'protocol'],
    verdicts({ connect: v('pass'), 'connect-response': v('fail') }),
  );
  t.equal(strict.get('tls-interception')?.evidence.dependsOn, 'connect-response');
  t.equal(strict.get('protocol')?.outcome, 'dependency_fail');
});

t.test('a check the kind never reported, with nothing to explain it, is a harness_fail', async (t) => {
  const out = applyDependencies('https', ['connect', 'payload'], verdicts({ connect: v('pass') }));
  t.equal(out.get('payload')?.outcome, 'harness_fail');
  t.match(out.get('payload')?.message, /https exchange reported no verdict for payload/);
});
