/**
 * `connect` means the tunnel reached the origin, and refusals are quoted as real clients read
 * them: a proxy that answers 200 before it has connected and then cannot reach the origin fails
 * `connect` (a diagnostic connection of the harness looks behind the answer); a refusal with bare
 * LF line endings is quoted, with its page's title; proxy timers are measured in the state the
 * agent leaves the tunnel (after its own first bytes), not in the state of a fresh CONNECT.
 */
import { fileURLToPath } from 'node:url';
import t from 'tap';
import type { CheckResult } from '../harness/model.ts';
import { runMatrix } from '../harness/runner/run.ts';
import { loadScenarios } from '../harness/scenarios.ts';
import { fixtureScenarios } from './helpers/fixtures.ts';
import { labNet } from './helpers/lab-net.ts';
import { EagerProxy, LfRefusingProxy, SplitAnswerProxy, StagedTimerProxy } from './helpers/shape-proxies.ts';

const find = (results: CheckResult[], proxy: string, check: string, endpoint?: string) =>
  results.filter((r) => r.proxy === proxy && r.check === check && (!endpoint || r.endpoint === endpoint));

t.test('a proxy that answers 200 and cannot reach the origin fails connect, TLS or not', async (t) => {
  const streams = loadScenarios({
    dir: fileURLToPath(new URL('../fixtures/scenarios-streams/', import.meta.url)),
  });
  const report = await runMatrix({
    proxies: [new EagerProxy()],
    profiles: ['streams'],
    scenarios: streams,
    labNet: await labNet(t),
  });
  const connects = find(report.results, 'eager-200', 'connect');
  t.ok(connects.length >= 3, 'a TLS stream and two raw TCP streams');
  for (const c of connects) {
    t.equal(c.outcome, 'fail', `${c.endpoint}: ${c.message}`);
    t.match(
      c.message,
      /answered "HTTP\/1\.1 200 Connection established", but the tunnel did not reach the origin: the proxy closed the tunnel on the first bytes/,
    );
    t.match(c.evidence, { reach: { reached: false, diagnostic: /apart from the agent/ } });
  }
  for (const r of find(report.results, 'eager-200', 'payload')) {
    t.equal(r.outcome, 'dependency_fail', `${r.endpoint} payload not run`);
    t.equal(r.evidence.dependsOn, 'connect');
  }
});

t.test('an HTTPS exchange through the same proxy: its TLS fails and connect says why', async (t) => {
  const report = await runMatrix({
    proxies: [new EagerProxy()],
    profiles: ['unpinned'],
    scenarios: fixtureScenarios(),
    labNet: await labNet(t),
  });
  const [c] = find(report.results, 'eager-200', 'connect');
  t.equal(c?.outcome, 'fail', c?.message ?? 'no result');
  t.match(c?.message, /did not reach the origin/);
});

t.test('a refusal with bare LF line endings is quoted, not read as a close', async (t) => {
  const report = await runMatrix({
    proxies: [new LfRefusingProxy()],
    profiles: ['unpinned'],
    scenarios: fixtureScenarios(),
    labNet: await labNet(t),
  });
  const [c] = find(report.results, 'lf-400', 'connect');
  t.equal(c?.outcome, 'fail');
  t.equal(
    c?.message,
    'CONNECT open.proxycheck.test:443 answered "HTTP/1.1 400 ERROR" (with bare LF line endings), not 200 (page: "Request refused by policy")',
  );
  t.match(c?.evidence, { statusCode: 400, lineEndings: 'LF', answerBody: /Request refused by policy/ });
  t.notMatch(c?.message, /closed the connection/);
});

t.test(
  "timers are measured after the agent speaks: a short timer on fresh CONNECTs is not the agent's",
  async (t) => {
    const cira = loadScenarios({
      dir: fileURLToPath(new URL('../fixtures/scenarios-cira/', import.meta.url)),
    });
    // cira-short: a keep-alive every second, a 3 s session; the probes wait 3.5 s
    const freshOnly = new StagedTimerProxy('short-before', { idleBeforeMs: 300, idleAfterMs: 6_000 });
    const afterToo = new StagedTimerProxy('short-after', { idleBeforeMs: 6_000, idleAfterMs: 600 });
    const report = await runMatrix({
      proxies: [freshOnly, afterToo],
      profiles: ['cira-short'],
      scenarios: cira,
      labNet: await labNet(t),
      timerWait: 3.5,
    });
    const [fine] = find(report.results, 'short-before', 'tunnel-keepalive');
    t.equal(fine?.outcome, 'pass', fine?.message ?? 'no result');
    const [bad] = find(report.results, 'short-after', 'tunnel-keepalive');
    t.equal(bad?.outcome, 'fail', bad?.message ?? 'no result');
    t.match(bad?.message, /^idle timer: the proxy closed a silent tunnel after 0\.[5-8] s without traffic/);
    t.ok(
      afterToo.kills.some((k) => k.stage === 'after'),
      'the after-first-byte timer did it',
    );
  },
);

t.test('an HTTP/1.0 answer written in pieces is read whole: a lenient agent goes through', async (t) => {
  const report = await runMatrix({
    proxies: [new SplitAnswerProxy()],
    profiles: ['unpinned'],
    scenarios: fixtureScenarios(),
    labNet: await labNet(t),
  });
  const [c] = find(report.results, 'split-answer', 'connect');
  t.equal(c?.outcome, 'pass', c?.message ?? 'no result');
  t.equal(c?.evidence.answerHead, 'HTTP/1.0 200 Connection established\r\nProxy-agent: split/1\r\n\r\n');
  t.equal(find(report.results, 'split-answer', 'payload')[0]?.outcome, 'pass');
});
