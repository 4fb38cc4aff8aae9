/**
 * Every knob of a `chain` definition changes a verdict, over real sockets: each is run with the
 * knob and without it (or with two values), the outcome differs as docs/proxies.md says, and the
 * oracle predicted it (`expected` equals the outcome, nothing unmatched). Where the oracle makes no
 * prediction (resets and silence on the path), the outcome alone is asserted.
 *
 * Runs of one group go at once, each on its own lab net; tunnel timers are measured with a short
 * `timerWait` so the whole file stays well under a minute and a half.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import type { CheckResult, RunReport } from '../harness/model.ts';
import { proxyById } from '../harness/proxies/registry.ts';
import type { ProxyUnderTest, StartedProxy } from '../harness/proxies/types.ts';
import { type RunOptions, runMatrix } from '../harness/runner/run.ts';
import { loadScenarios, type Profile, type ScenarioSet } from '../harness/scenarios.ts';
import { withCredentials } from './helpers/adapters.ts';
import { fixtureScenarios } from './helpers/fixtures.ts';
import { labNet } from './helpers/lab-net.ts';

const ZSCALER = 'CN=Zscaler Intermediate Root CA, O=Zscaler Inc.';
const OPEN = 'open.proxycheck.test:443';
const PINNED = 'pinned.proxycheck.test:443';
const ODD = 'odd-port.proxycheck.test:13000';
const BRAZIL = 'south-br.agent-api.analyzer.flexxible.com:443';
const REPO = 'eset-repository.proxycheck.test:80';
const CIRA = 'iagent.flexxible.com:443';
const RAS = 'ras.flexxible.com:443';

function tmp(t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'proxycheck-knobs-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A chain definition file `<id>.yaml` in `dir`: `id`, `engine: chain`, then the knob lines. */
function definition(dir: string, id: string, ...knobs: string[]): string {
  const file = join(dir, `${id}.yaml`);
  writeFileSync(file, [`id: ${id}`, 'engine: chain', ...knobs, ''].join('\n'));
  return file;
}

/** One profile cut down to some of its exchanges (by index), so a run does only what it shows. */
function only(set: ScenarioSet, id: string, ...indexes: number[]): Profile {
  const p = set.profiles.get(id);
  if (!p) throw new Error(`no profile ${id}`);
  return { ...p, exchanges: indexes.map((i) => p.exchanges[i] as Profile['exchanges'][number]) };
}

type Profiles = (set: ScenarioSet) => string[] | Profile[];

/** One run of `proxy` (a definition file, or a proxy in code) on its own lab net and scenario set. */
async function run(
  t: Test,
  fresh: () => ScenarioSet,
  proxy: string | ((set: ScenarioSet) => ProxyUnderTest),
  profiles: Profiles,
  extra: Partial<RunOptions> = {},
): Promise<RunReport> {
  const net = await labNet(t);
  const scenarios = fresh();
  return runMatrix({
    scenarios,
    proxies: [typeof proxy === 'string' ? proxy : proxy(scenarios)],
    profiles: profiles(scenarios),
    labNet: net,
    ...extra,
  });
}

const fixtures = () => fixtureScenarios();
const builtIn = () => loadScenarios();

/** The result of `check` at `endpoint` (the one exchange there), which must exist. */
function result(t: Test, report: RunReport, endpoint: string, check: string): CheckResult {
  const r = report.results.find((x) => x.endpoint === endpoint && x.check === check);
  t.ok(r, `${report.proxies[0]?.id}: a ${check} result at ${endpoint}`);
  return r as CheckResult;
}

/** The outcome is `want`, and the oracle predicted it. */
function predicted(t: Test, report: RunReport, endpoint: string, check: string, want: string): CheckResult {
  const r = result(t, report, endpoint, check);
  const who = `${report.proxies[0]?.id} ${endpoint} ${check}`;
  t.equal(r.outcome, want, `${who}: ${want} (${r.message})`);
  t.equal(r.expected, r.outcome, `${who}: predicted (${r.expectedReason ?? 'the default'})`);
  return r;
}

function allPredicted(t: Test, ...reports: RunReport[]): void {
  for (const report of reports) {
    const wrong = report.results
      .filter((r) => !r.matched)
      .map((r) => `${r.id}: ${r.outcome}, ${r.expected}: ${r.message}`);
    t.same(wrong, [], `${report.proxies[0]?.id}: every outcome as the oracle predicts`);
    t.equal(report.summary.unmatched, 0);
  }
}

/** Starts `inner` and hands the agent no credentials at all. */
function withoutCredentials(inner: ProxyUnderTest, id: string): ProxyUnderTest {
  return {
    id,
    describe: () => `${inner.describe()} (agent given no credentials)`,
    start: async (ctx): Promise<StartedProxy> => {
      const started = await inner.start(ctx);
      return { ...started, id, credentials: undefined };
    },
  };
}

t.test('connectPorts and inspection (modes, CA subject, trusted CA)', async (t) => {
  const dir = tmp(t);
  const profiles = () => ['unpinned', 'pinned', 'odd-port'];
  const ca = `caSubject: '${ZSCALER}'`;
  const [plain, ports, all, except, onlyPinned, trusted] = await Promise.all([
    run(t, fixtures, definition(dir, 'k-plain'), profiles),
    run(t, fixtures, definition(dir, 'k-ports', 'connectPorts: [443]'), profiles),
    run(t, fixtures, definition(dir, 'k-all', 'inspection: { mode: all }'), profiles),
    run(
      t,
      fixtures,
      definition(dir, 'k-except', `inspection: { mode: all-except, hosts: [pinned.proxycheck.test], ${ca} }`),
      profiles,
    ),
    run(
      t,
      fixtures,
      definition(dir, 'k-only', 'inspection: { mode: only, hosts: [pinned.proxycheck.test] }'),
      profiles,
    ),
    run(
      t,
      fixtures,
      definition(
        dir,
        'k-trusted',
        `inspection: { mode: all-except, hosts: [pinned.proxycheck.test], ${ca} }`,
      ),
      profiles,
      { trustCorporateCa: true },
    ),
  ]);
  allPredicted(t, plain, ports, all, except, onlyPinned, trusted);

  // connectPorts: 13000 is refused with a 403, 443 still tunnels
  predicted(t, plain, ODD, 'connect', 'pass');
  const refused = predicted(t, ports, ODD, 'connect', 'fail');
  t.match(refused.message, /403/);
  t.match(refused.expectedReason, /port 13000 is not in connectPorts \(443\)/);
  predicted(t, ports, ODD, 'payload', 'dependency_fail');
  predicted(t, ports, OPEN, 'connect', 'pass');
  predicted(t, ports, OPEN, 'payload', 'pass');

  // inspection: all re-signs both hosts; the must-not-inspect one fails, the other warns
  for (const ep of [OPEN, PINNED, ODD]) predicted(t, plain, ep, 'tls-interception', 'pass');
  predicted(t, all, OPEN, 'tls-interception', 'warn');
  predicted(t, all, PINNED, 'tls-interception', 'fail');
  predicted(t, all, PINNED, 'pinning', 'fail');
  predicted(t, all, OPEN, 'payload', 'dependency_fail');
  // all-except: the listed host untouched, the other re-signed
  predicted(t, except, PINNED, 'tls-interception', 'pass');
  predicted(t, except, PINNED, 'pinning', 'pass');
  predicted(t, except, OPEN, 'tls-interception', 'warn');
  predicted(t, except, ODD, 'tls-interception', 'warn');
  // only: the listed host alone re-signed
  predicted(t, onlyPinned, PINNED, 'tls-interception', 'fail');
  predicted(t, onlyPinned, OPEN, 'tls-interception', 'pass');
  predicted(t, onlyPinned, ODD, 'tls-interception', 'pass');
  predicted(t, onlyPinned, OPEN, 'payload', 'pass');

  // caSubject: the verdict names the CA that re-signed, the default one otherwise
  const named = result(t, except, OPEN, 'tls-interception');
  t.equal(named.evidence.reSignedBy, ZSCALER, 'evidence: re-signed by the definition’s CA subject');
  t.match(named.message, /re-signed by "Zscaler Intermediate Root CA"/);
  const corporate = result(t, all, OPEN, 'tls-interception');
  t.ok(corporate.evidence.reSignedBy, 'the default inspection CA re-signs too');
  t.not(corporate.evidence.reSignedBy, ZSCALER, 'but under its own subject');
  t.notMatch(corporate.message, /Zscaler/);

  // trustCorporateCa: the agent trusts the definition's CA, so the unpinned payload goes through it
  predicted(t, except, OPEN, 'payload', 'dependency_fail');
  predicted(t, trusted, OPEN, 'payload', 'pass');
  predicted(t, trusted, OPEN, 'headers', 'pass');
  const through = predicted(t, trusted, OPEN, 'tls-interception', 'warn');
  t.match(through.evidence, { reSignedBy: ZSCALER, agentTrusts: true });
});

t.test('auth: basic, and the header policy on forwarded HTTP', async (t) => {
  const dir = tmp(t);
  // FlexxAgent's Agent API (tunnelled) and ESET's repository (plain HTTP, forwarded)
  const profiles = (set: ScenarioSet) => [only(set, 'flexxagent-brazil', 0), only(set, 'eset', 1)];
  const authFile = definition(dir, 'k-auth', 'auth: basic');
  const [auth, wrong, none, open, added, leak] = await Promise.all([
    run(t, builtIn, authFile, profiles),
    run(
      t,
      builtIn,
      (set) =>
        withCredentials(proxyById(authFile, { scenarios: set }), 'k-auth-wrong', {
          username: 'agent',
          password: 'not-it',
        }),
      profiles,
    ),
    run(
      t,
      builtIn,
      (set) => withoutCredentials(proxyById(authFile, { scenarios: set }), 'k-auth-none'),
      profiles,
    ),
    run(t, builtIn, definition(dir, 'k-open'), profiles),
    run(t, builtIn, definition(dir, 'k-added', 'headers: { via: true, xForwardedFor: true }'), profiles),
    run(
      t,
      builtIn,
      definition(dir, 'k-leak', 'auth: basic', 'headers: { proxyAuthorization: forward }'),
      profiles,
    ),
  ]);
  allPredicted(t, auth, open, added, leak);

  // auth: the agent is given the credentials and passes; without them, or with wrong ones, 407
  for (const c of ['connect', 'payload', 'headers']) predicted(t, auth, BRAZIL, c, 'pass');
  predicted(t, auth, REPO, 'forward', 'pass');
  for (const [report, how] of [
    [wrong, 'wrong credentials'],
    [none, 'no credentials'],
  ] as const) {
    const c = result(t, report, BRAZIL, 'connect');
    t.equal(c.outcome, 'fail', `${how}: connect fails`);
    t.match(c.message, /answered "HTTP\/1\.1 407 /, `${how}: with the proxy's 407`);
    t.equal(result(t, report, BRAZIL, 'payload').outcome, 'dependency_fail');
    const f = result(t, report, REPO, 'forward');
    t.equal(f.outcome, 'fail', `${how}: the forwarded request is refused`);
    t.match(f.message, /407/);
  }
  t.notMatch(JSON.stringify(wrong), /not-it/, 'the wrong password is not in the report');

  // headers.via / xForwardedFor: listed as added; the verdict is the same (RFC 9110 allows them)
  const plainHeaders = predicted(t, open, REPO, 'headers', 'warn'); // proxy-chain passes Proxy-Connection on
  const addedHeaders = predicted(t, added, REPO, 'headers', 'warn');
  t.equal(addedHeaders.outcome, plainHeaders.outcome, 'Via and X-Forwarded-For do not change the verdict');
  const addedOf = (r: CheckResult) => [
    ...new Set(((r.evidence.steps ?? []) as Array<{ added?: string[] }>).flatMap((s) => s.added ?? [])),
  ];
  t.same(addedOf(plainHeaders), [], 'nothing added by default');
  t.same(addedOf(addedHeaders).sort(), ['via', 'x-forwarded-for'], 'Via and X-Forwarded-For listed as added');
  predicted(t, added, BRAZIL, 'headers', 'pass');

  // headers.proxyAuthorization: forward (with auth) leaks the credentials to the origin; consume does not
  predicted(t, auth, REPO, 'headers', 'warn');
  const leaked = predicted(t, leak, REPO, 'headers', 'fail');
  t.equal(leaked.evidence.leakedProxyAuthorization, true);
  t.match(leaked.message, /Proxy-Authorization reached the origin/);
  t.notOk(result(t, auth, REPO, 'headers').evidence.leakedProxyAuthorization);
  predicted(t, leak, REPO, 'forward', 'pass');
});

t.test('timers and the CONNECT answer on a strict CIRA client', async (t) => {
  const dir = tmp(t);
  const profiles = (set: ScenarioSet) => [only(set, 'vpro-cira', 0)];
  // timerWait 6: the idle (3 s) and lifetime (4 s) timers show; a run waits no longer than that
  const timed = { timerWait: 6 };
  const [plain, idle, life, http10, agentHeader] = await Promise.all([
    run(t, builtIn, definition(dir, 'k-untimed'), profiles, timed),
    run(t, builtIn, definition(dir, 'k-idle', 'idleTimeoutSeconds: 3'), profiles, timed),
    run(t, builtIn, definition(dir, 'k-life', 'lifetimeSeconds: 4'), profiles, timed),
    run(t, builtIn, definition(dir, 'k-http10', 'connectAnswer: { version: HTTP/1.0 }'), profiles, timed),
    run(
      t,
      builtIn,
      definition(dir, 'k-agent', "connectAnswer: { headers: [['Proxy-Agent', 'x']] }"),
      profiles,
      timed,
    ),
  ]);
  allPredicted(t, plain, idle, life, http10, agentHeader);

  // no timer: nothing showed in 6 s, and the agent's 30 s gap is more than the run waited
  const unknown = predicted(t, plain, CIRA, 'tunnel-keepalive', 'skip');
  t.match(unknown.message, /not known in 6 s of real time/);
  // idleTimeoutSeconds: 3 closes the silent tunnel, and the measured timer says so
  const idled = predicted(t, idle, CIRA, 'tunnel-keepalive', 'fail');
  const it = idled.evidence.timers as { timer?: string; idleTimerSeconds?: number };
  t.equal(it.timer, 'idle');
  t.ok(
    (it.idleTimerSeconds ?? 0) >= 2.5 && (it.idleTimerSeconds ?? 0) <= 4.5,
    `idle timer measured about 3 s (${it.idleTimerSeconds})`,
  );
  // lifetimeSeconds: 4 closes a busy tunnel
  const capped = predicted(t, life, CIRA, 'tunnel-keepalive', 'fail');
  const lt = capped.evidence.timers as { timer?: string; lifetimeCapSeconds?: number };
  t.equal(lt.timer, 'lifetime');
  t.ok(
    (lt.lifetimeCapSeconds ?? 0) >= 3.5 && (lt.lifetimeCapSeconds ?? 0) <= 5.5,
    `lifetime cap measured about 4 s (${lt.lifetimeCapSeconds})`,
  );
  for (const report of [idle, life]) predicted(t, report, CIRA, 'protocol', 'pass');

  // connectAnswer: the strict client takes only a bare HTTP/1.1 200
  predicted(t, plain, CIRA, 'connect-response', 'pass');
  const v10 = predicted(t, http10, CIRA, 'connect-response', 'fail');
  t.match(v10.message, /HTTP\/1\.0/);
  const hdr = predicted(t, agentHeader, CIRA, 'connect-response', 'fail');
  t.match(hdr.message, /Proxy-Agent: x/);
  for (const report of [http10, agentHeader]) {
    predicted(t, report, CIRA, 'connect', 'pass');
    predicted(t, report, CIRA, 'protocol', 'dependency_fail');
  }
});

t.test('path faults: delays keep the verdicts, resets and silence break the exchange', async (t) => {
  const dir = tmp(t);
  const [slow, paced, reset, silent] = await Promise.all([
    run(t, fixtures, definition(dir, 'k-latency', 'faults: { latencyMs: 200 }'), () => ['unpinned']),
    run(
      t,
      builtIn,
      definition(dir, 'k-paced', 'faults: { bandwidthBytesPerSecond: 100000, splitWritesBytes: 512 }'),
      () => ['flexxagent-brazil'],
    ),
    run(t, fixtures, definition(dir, 'k-reset', 'faults: { resetAfterBytes: 12000 }'), () => ['unpinned']),
    // short deadlines: a silent path is seen as a stalled session, not waited out for 30 s
    run(
      t,
      builtIn,
      definition(dir, 'k-silent', 'faults: { silenceAfterSeconds: 1 }'),
      () => ['remote-assistance'],
      { timerWait: 3, timeouts: { answerMs: 4000, requestMs: 4000 } },
    ),
  ]);
  allPredicted(t, slow, paced);

  // latency: every verdict unchanged, the time they took grown
  for (const c of ['connect', 'tls-interception', 'payload', 'headers']) predicted(t, slow, OPEN, c, 'pass');
  const connect = result(t, slow, OPEN, 'connect');
  const answerMs =
    (connect.evidence.timings as { connectAnswerMs?: number } | undefined)?.connectAnswerMs ?? 0;
  t.ok(answerMs >= 390, `the CONNECT answer took two delayed chunks (${answerMs} ms)`);
  t.ok(connect.durationMs >= 200, `connect took at least the latency (${connect.durationMs} ms)`);
  const handshake = Number(result(t, slow, OPEN, 'tls-interception').evidence.handshakeMs ?? 0);
  t.ok(handshake >= 390, `the TLS handshake took a delayed round trip (${handshake} ms)`);

  // bandwidth and split writes: verdicts unchanged, the 80 kB upload paced
  for (const c of ['connect', 'tls-interception', 'pinning', 'payload', 'headers'])
    predicted(t, paced, BRAZIL, c, 'pass');
  const payload = result(t, paced, BRAZIL, 'payload');
  t.ok(payload.durationMs >= 500, `80 kB at 100 kB/s took its time (${payload.durationMs} ms)`);

  // resetAfterBytes: no prediction (it depends on each exchange's bytes); the report breaks
  t.equal(
    result(t, reset, OPEN, 'connect').outcome,
    'pass',
    'the CONNECT and the TLS handshake are below 12000 bytes',
  );
  const broken = result(t, reset, OPEN, 'payload');
  t.equal(broken.outcome, 'fail', `reset after 12000 bytes: ${broken.message}`);
  t.match(broken.message, /ECONNRESET|reset|socket hang up/i);

  // silenceAfterSeconds: no prediction; the long-lived session stalls on the silent path
  t.equal(result(t, silent, RAS, 'connect').outcome, 'pass');
  // (which check sees it first depends on how far the session got in its first second)
  const broke = ['tls-interception', 'protocol', 'payload', 'tunnel-keepalive'].filter(
    (c) => result(t, silent, RAS, c).outcome === 'fail',
  );
  t.ok(broke.length > 0, `the session broke on the silent path (${broke.join(', ')} fail)`);
  const tk = result(t, silent, RAS, 'tunnel-keepalive');
  t.ok(['fail', 'dependency_fail'].includes(tk.outcome), `tunnel-keepalive ${tk.outcome}: ${tk.message}`);
});
