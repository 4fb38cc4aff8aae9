/**
 * The squid engine's knobs at the verdict level: each knob squid honours, written in a definition
 * file and run (runMatrix, squid as a process), changes a verdict, and the oracle predicted it
 * (`expected === outcome`, every run `summary.unmatched === 0`), except where docs/proxies.md says
 * the oracle makes no prediction (faults.resetAfterBytes: the outcome only).
 *
 * Six squid starts, each definition carrying knobs that do not interfere:
 *  - plain:  the engine's defaults (CONNECT to 443 only, Via and X-Forwarded-For added, no timers);
 *  - knobs:  connectPorts [443, 13000], auth basic, idleTimeoutSeconds 3, no Via / X-Forwarded-For;
 *  - any:    connectPorts any, lifetimeSeconds 4 (done by the relay in front of squid);
 *  - only:   inspection only open.proxycheck.test, with a caSubject;
 *  - except: inspection all-except open.proxycheck.test (the default inspection CA);
 *  - reset:  faults.resetAfterBytes 12000 (done by the relay).
 * The socket-level side of the same knobs is test/squid-knobs.test.ts.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import type { CheckResult, RunReport } from '../harness/model.ts';
import { proxyById } from '../harness/proxies/registry.ts';
import { runMatrix } from '../harness/runner/run.ts';
import { loadScenarios, type ScenarioSet } from '../harness/scenarios.ts';
import { withCredentials } from './helpers/adapters.ts';
import { fixtureScenarios } from './helpers/fixtures.ts';
import { labNet } from './helpers/lab-net.ts';
import { requireComponent, squidProblem } from './helpers/requirements.ts';

const opts = requireComponent(t, 'squid', squidProblem());

const CA_SUBJECT = 'CN=Knob Inspection Root, O=Knob Corp';
const CIRA = 'vpro-cira/iagent.flexxible.com:443';
const REPO = 'eset/eset-repository.proxycheck.test:80';

interface Run {
  report: RunReport;
  seconds: number;
  /** The result `<profile>/<endpoint>/<check>` of this run's proxy; fails the test when missing. */
  at(id: string): CheckResult;
}

/** One line per result not as predicted: what came out, what was expected and why. */
function notAsPredicted(report: RunReport): string {
  return report.results
    .filter((r) => !r.matched)
    .map(
      (r) =>
        `${r.id}: ${r.outcome}, expected ${r.expected} (${r.expectedReason ?? 'no prediction: the default'}): ${r.message}`,
    )
    .join('\n');
}

/** Runs definition `yaml` on `profiles` once, the first time a subtest asks for it. */
function definitionRun(
  parent: Test,
  id: string,
  yaml: string,
  profiles: string[],
  set: () => ScenarioSet,
): () => Promise<Run> {
  let run: Promise<Run> | undefined;
  return () => {
    run ??= (async () => {
      const dir = mkdtempSync(join(tmpdir(), 'proxycheck-knobs-'));
      parent.teardown(() => rmSync(dir, { recursive: true, force: true }));
      const file = join(dir, `${id}.yaml`);
      writeFileSync(file, `id: ${id}\nengine: squid\nruntime: process\n${yaml}`);
      const t0 = performance.now();
      const report = await runMatrix({
        scenarios: set(),
        proxies: [file],
        profiles,
        labNet: await labNet(parent),
      });
      const seconds = Math.round((performance.now() - t0) / 100) / 10;
      parent.comment(`${id}: ${report.results.length} results in ${seconds} s`);
      return {
        report,
        seconds,
        at(rid) {
          const r = report.results.find((x) => x.id === `${id}/${rid}`);
          if (!r) throw new Error(`${id}: no result ${rid}`);
          return r;
        },
      };
    })();
    return run;
  };
}

/** `rid` came out as `want`, and the oracle predicted it. */
function verdict(t: Test, run: Run, rid: string, want: string): CheckResult {
  const r = run.at(rid);
  t.equal(r.outcome, want, `${r.id}: ${want} (${r.message})`);
  t.equal(r.expected, r.outcome, `${r.id}: predicted (${r.expectedReason ?? 'the default'})`);
  return r;
}

function allPredicted(t: Test, run: Run): void {
  t.equal(run.report.summary.unmatched, 0, `every result of ${run.report.proxies[0]?.id} as predicted`, {
    notAsPredicted: notAsPredicted(run.report),
  });
  t.equal(run.report.proxies[0]?.runtime, 'process', 'squid ran as a process');
  t.match(run.report.proxies[0]?.version, /^squid 5/);
}

t.test('the squid engine honours its knobs, verdict by verdict, as the oracle predicts', opts, async (t) => {
  let builtIn: ScenarioSet | undefined;
  let fixtures: ScenarioSet | undefined;
  const shipped = () => (builtIn ??= loadScenarios());
  const testlab = () => (fixtures ??= fixtureScenarios());
  const withTimers = ['kaspersky', 'eset', 'vpro-cira'];
  const plain = definitionRun(t, 'knobs-plain', '', withTimers, shipped);
  const knobs = definitionRun(
    t,
    'knobs-set',
    [
      'connectPorts: [443, 13000]',
      'auth: basic',
      'idleTimeoutSeconds: 3',
      'headers: { via: false, xForwardedFor: false }',
      '',
    ].join('\n'),
    withTimers,
    shipped,
  );
  const any = definitionRun(
    t,
    'knobs-any',
    'connectPorts: any\nlifetimeSeconds: 4\n',
    ['kaspersky', 'vpro-cira'],
    shipped,
  );
  const only = definitionRun(
    t,
    'knobs-only',
    `inspection: { mode: only, hosts: [open.proxycheck.test], caSubject: '${CA_SUBJECT}' }\n`,
    ['unpinned', 'pinned'],
    testlab,
  );
  const except = definitionRun(
    t,
    'knobs-except',
    'inspection: { mode: all-except, hosts: [open.proxycheck.test] }\n',
    ['unpinned', 'pinned'],
    testlab,
  );
  const reset = definitionRun(
    t,
    'knobs-reset',
    'faults: { resetAfterBytes: 12000 }\n',
    ['unpinned'],
    testlab,
  );

  t.test('connectPorts [443, 13000]: CONNECT to 13000 passes; the default [443] refuses it', async (t) => {
    const [p, k] = [await plain(), await knobs()];
    for (const host of ['ksc-server', 'ksc-gateway']) {
      const at = `kaspersky/${host}.proxycheck.test:13000`;
      const refused = verdict(t, p, `${at}/connect`, 'fail');
      t.match(refused.message, /403 Forbidden/);
      t.match(refused.expectedReason, /port 13000 is not in connectPorts \(443\)/);
      verdict(t, k, `${at}/connect`, 'pass');
      verdict(t, p, `${at}/payload`, 'dependency_fail');
      verdict(t, k, `${at}/payload`, 'pass');
    }
    // still refused: a port in neither list
    const other = verdict(t, k, 'kaspersky/ksc-server.proxycheck.test:14000/connect', 'fail');
    t.match(other.expectedReason, /port 14000 is not in connectPorts \(443, 13000\)/);
    allPredicted(t, p);
    allPredicted(t, k);
  });

  t.test('connectPorts any: every port the default refuses is tunnelled', async (t) => {
    const [p, a] = [await plain(), await any()];
    for (const at of [
      'kaspersky/ksc-server.proxycheck.test:13000',
      'kaspersky/ksc-server.proxycheck.test:14000',
      'kaspersky/ksc-server.proxycheck.test:17000',
      'vpro-cira/iagent.flexxible.com:4433#open-amt-mps',
    ]) {
      verdict(t, p, `${at}/connect`, 'fail');
      verdict(t, a, `${at}/connect`, 'pass');
    }
    verdict(t, a, 'kaspersky/ksc-server.proxycheck.test:14000/payload', 'pass');
    allPredicted(t, a);
  });

  t.test("auth basic: every exchange passes with the run's credentials", async (t) => {
    const [p, k] = [await plain(), await knobs()];
    const at = 'kaspersky/ksc-server.proxycheck.test:443';
    const authed = verdict(t, k, `${at}/connect`, 'pass');
    t.match(
      authed.evidence.request,
      /\r\nProxy-Authorization: Basic <redacted>\r\n/,
      'the CONNECT carried them',
    );
    t.notMatch(verdict(t, p, `${at}/connect`, 'pass').evidence.request, /Proxy-Authorization/);
    for (const check of ['tls-interception', 'payload', 'headers']) verdict(t, k, `${at}/${check}`, 'pass');
    verdict(t, k, `${CIRA}/protocol`, 'pass'); // the strict CIRA client authenticates too
    verdict(t, k, `${REPO}/forward`, 'pass'); // and forwarded plain HTTP
    // the knob is what makes squid ask: an agent with a wrong password is refused with 407
    const dir = mkdtempSync(join(tmpdir(), 'proxycheck-knobs-'));
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    const file = join(dir, 'knobs-auth.yaml');
    writeFileSync(file, 'id: knobs-auth\nengine: squid\nruntime: process\nauth: basic\n');
    const set = fixtureScenarios();
    const wrong = await runMatrix({
      scenarios: set,
      proxies: [
        withCredentials(proxyById(file, { scenarios: set }), 'knobs-auth-wrong', {
          username: 'agent',
          password: 'not-it',
        }),
      ],
      profiles: ['unpinned'],
      labNet: await labNet(t),
    });
    const refused = wrong.results.find(
      (r) => r.id === 'knobs-auth-wrong/unpinned/open.proxycheck.test:443/connect',
    );
    t.equal(refused?.outcome, 'fail', 'a wrong password: connect fails');
    t.match(refused?.message, /407 Proxy Authentication Required/);
    t.notMatch(JSON.stringify(wrong), /not-it/, 'the password is not in the report');
  });

  t.test(
    'idleTimeoutSeconds 3: the CIRA tunnel fails tunnel-keepalive on a measured ~3-4 s idle timer',
    async (t) => {
      const [p, k] = [await plain(), await knobs()];
      const idle = verdict(t, k, `${CIRA}/tunnel-keepalive`, 'fail');
      t.match(idle.expectedReason, /closes tunnels silent for 3 s \(idleTimeoutSeconds\)/);
      const timers = idle.evidence.timers as { timer?: string; idleTimerSeconds?: number };
      t.equal(timers.timer, 'idle');
      // squid is configured N s and counts whole seconds: it closes after between N - 1 and N
      t.ok(
        timers.idleTimerSeconds !== undefined &&
          timers.idleTimerSeconds >= 1.9 &&
          timers.idleTimerSeconds <= 3.6,
        `measured idle timer ${timers.idleTimerSeconds} s, within 1.9-3.6 s (squid: between N - 1 and N)`,
      );
      // without it: nothing closed the silent tunnel in the 10 s waited, short of the agent's 30 s gap
      const unknown = verdict(t, p, `${CIRA}/tunnel-keepalive`, 'skip');
      t.match(unknown.message, /^not known in 10 s of real time/);
      t.equal((unknown.evidence.timers as { timer?: string }).timer, undefined);
    },
  );

  t.test(
    'lifetimeSeconds 4 (the relay in front of squid): tunnel-keepalive fails on a lifetime cap',
    async (t) => {
      const [p, a] = [await plain(), await any()];
      const capped = verdict(t, a, `${CIRA}/tunnel-keepalive`, 'fail');
      t.match(capped.expectedReason, /closes tunnels 4 s after they open \(lifetimeSeconds\)/);
      const timers = capped.evidence.timers as { timer?: string; lifetimeCapSeconds?: number };
      t.equal(timers.timer, 'lifetime');
      t.ok(
        timers.lifetimeCapSeconds !== undefined &&
          timers.lifetimeCapSeconds >= 3.5 &&
          timers.lifetimeCapSeconds <= 6,
        `measured lifetime cap ${timers.lifetimeCapSeconds} s, within 3.5-6 s`,
      );
      verdict(t, p, `${CIRA}/tunnel-keepalive`, 'skip');
    },
  );

  t.test('headers via / xForwardedFor false: forwarded HTTP gets neither; by default both', async (t) => {
    const [p, k] = [await plain(), await knobs()];
    const added = (r: CheckResult) =>
      [...new Set((r.evidence.steps as Array<{ added: string[] }>).flatMap((s) => s.added))].sort();
    const def = verdict(t, p, `${REPO}/headers`, 'pass');
    const off = verdict(t, k, `${REPO}/headers`, 'pass');
    t.ok(added(def).includes('via'), `default: Via added (${added(def)})`);
    t.ok(added(def).includes('x-forwarded-for'), 'default: X-Forwarded-For added');
    t.notOk(added(off).includes('via'), `knobs off: no Via (${added(off)})`);
    t.notOk(added(off).includes('x-forwarded-for'), 'knobs off: no X-Forwarded-For');
    t.notMatch(
      (off.evidence.steps as Array<{ received: string }>).map((s) => s.received).join(''),
      /^(via|x-forwarded-for):/im,
    );
    t.equal(def.outcome, off.outcome, 'the verdict is the same');
  });

  t.test('inspection only (with caSubject) and all-except: tls-interception per host', async (t) => {
    const [o, e] = [await only(), await except()];
    const open = 'unpinned/open.proxycheck.test:443';
    const pinned = 'pinned/pinned.proxycheck.test:443';
    // only: the named host is re-signed by the CA the definition names; the other is untouched
    const inspected = verdict(t, o, `${open}/tls-interception`, 'warn');
    t.equal(inspected.evidence.reSignedBy, CA_SUBJECT, 'the evidence names the subject');
    t.equal(inspected.evidence.reSignedByCN, 'Knob Inspection Root', 'and its CN');
    t.match(inspected.message, /re-signed by "Knob Inspection Root"/);
    verdict(t, o, `${open}/payload`, 'dependency_fail');
    verdict(t, o, `${pinned}/tls-interception`, 'pass');
    verdict(t, o, `${pinned}/pinning`, 'pass');
    // all-except: the named host is untouched; the other (must not be inspected) is re-signed
    verdict(t, e, `${open}/tls-interception`, 'pass');
    verdict(t, e, `${open}/payload`, 'pass');
    const sensitive = verdict(t, e, `${pinned}/tls-interception`, 'fail');
    t.notMatch(sensitive.evidence.reSignedByCN, /Knob/, 'the default inspection CA');
    t.ok(sensitive.evidence.reSignedByCN, `re-signed by ${sensitive.evidence.reSignedByCN}`);
    verdict(t, e, `${pinned}/pinning`, 'fail');
    allPredicted(t, o);
    allPredicted(t, e);
  });

  t.test(
    'faults.resetAfterBytes 12000 (the relay): payload fails (no prediction: the outcome only)',
    async (t) => {
      const r = await reset();
      const broken = r.at('unpinned/open.proxycheck.test:443/payload');
      t.equal(broken.outcome, 'fail', broken.message);
      t.match(broken.message, /ECONNRESET|reset/i);
      t.equal(
        r.at('unpinned/open.proxycheck.test:443/connect').outcome,
        'pass',
        'the CONNECT went through first',
      );
    },
  );

  t.test('timings (no assertion on them: the machine may be busy)', async (t) => {
    const runs = await Promise.all([plain(), knobs(), any(), only(), except(), reset()]);
    const total = Math.round(runs.reduce((s, r) => s + r.seconds, 0));
    t.comment(
      `six squid runs, ${total} s: ${runs.map((r) => `${r.report.proxies[0]?.id} ${r.seconds} s`).join(', ')}`,
    );
    t.equal(runs.length, 6);
  });
});
