/**
 * Auto-detect fallback, end to end over real sockets: every availability state of a proxy
 * definition (refused, blackhole, unresolvable, auth-loop, dies) and every shape of proxy script
 * auto detect can find (a list with a dead first entry, DIRECT, a fetch error, a throwing script,
 * a syntax error, DIRECT blocked), with the time to fall back measured against the agent's
 * connect deadline. The agent is the remote-assistance session (fail-open, seed 000) of
 * fixtures/scenarios-ws, and, for fail-closed, the Service Bus agent beside it.
 */
import { cpSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import type { CheckResult } from '../harness/model.ts';
import { runMatrix } from '../harness/runner/run.ts';
import { loadScenarios } from '../harness/scenarios.ts';
import { labNet } from './helpers/lab-net.ts';
import { requireComponent, squidProblem } from './helpers/requirements.ts';

const squid = requireComponent(t, 'squid', squidProblem());
const RAS = 'ras.proxycheck.test:443';
/** The agent's connect deadline in these tests (the built-in profile says 21 s). */
const DEADLINE_S = 2;

/** A copy of fixtures/scenarios-ws with the ras agent's connect deadline and threshold set, plus proxy `files`. */
function scenarios(t: Test, files: Record<string, string>, withinS: number): string {
  const dir = mkdtempSync(join(tmpdir(), 'proxycheck-fallback-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  cpSync(new URL('../fixtures/scenarios-ws/', import.meta.url).pathname, dir, { recursive: true });
  writeFileSync(
    join(dir, 'profiles', 'ras.yaml'),
    `id: ras
title: remote assistance session
source: [000_77333517a4595425.txt]
proxyUnreachable:
  fallback: auto-detect
  source: [000_77333517a4595425.txt]
  connectDeadlineSeconds: ${DEADLINE_S}
  fallbackWithinSeconds: ${withinS}
exchanges:
  - kind: websocket
    catalog: wslab
    host: ras.proxycheck.test
    port: 443
    path: /ws/session
    session: { seconds: 60, intervalSeconds: 5, bursts: 6, burstBytes: 65536 }
`,
  );
  mkdirSync(join(dir, 'proxies'), { recursive: true });
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, 'proxies', name), text);
  return dir;
}

async function run(
  t: Test,
  files: Record<string, string>,
  proxies: string[],
  profiles = ['ras'],
  withinS = 10,
) {
  const dir = scenarios(t, files, withinS);
  const set = loadScenarios({ dir });
  const report = await runMatrix({
    proxies,
    profiles,
    scenarios: set,
    labNet: await labNet(t),
    timeScale: 0.02,
    timerWait: 1,
  });
  const get = (proxy: string, check: string, endpoint = RAS): CheckResult => {
    const r = report.results.find((x) => x.proxy === proxy && x.check === check && x.endpoint === endpoint);
    if (!r) throw new Error(`no ${proxy} ${endpoint} ${check} result`);
    return r;
  };
  return { report, get };
}

const def = (id: string, body: string) => ({ [`${id}.yaml`]: `id: ${id}\nengine: chain\n${body}` });

t.test('refused: the agent falls back at once, DIRECT', async (t) => {
  const { get, report } = await run(t, def('refused', 'availability: refused\n'), ['refused']);
  t.equal(get('refused', 'connect').outcome, 'fail');
  t.match(get('refused', 'connect').message, /ECONNREFUSED/);
  const fb = get('refused', 'fallback');
  t.equal(fb.outcome, 'pass', fb.message);
  t.match(fb.evidence, { route: 'direct (auto detect)', method: 'none', sessionWorked: true });
  t.ok((fb.evidence.fallbackMs as number) < 1000, `fell back after ${fb.evidence.fallbackMs} ms`);
  for (const c of ['tls-interception', 'pinning', 'protocol', 'payload'])
    t.equal(get('refused', c).outcome, 'pass', `${c} on the direct route`);
  t.equal(report.summary.unmatched, 0, 'every result as the oracle predicts');
});

t.test('blackhole: the agent waits its whole connect deadline, then falls back', async (t) => {
  const { get, report } = await run(t, def('hole', 'availability: blackhole\n'), ['hole']);
  const connect = get('hole', 'connect');
  t.equal(connect.outcome, 'fail');
  t.match(connect.message, new RegExp(`no answer within ${DEADLINE_S * 1000} ms`));
  const fb = get('hole', 'fallback');
  t.equal(fb.outcome, 'pass', fb.message);
  const ms = fb.evidence.fallbackMs as number;
  t.ok(ms >= DEADLINE_S * 1000, `fell back after ${ms} ms, not before the ${DEADLINE_S} s deadline`);
  t.ok(ms < DEADLINE_S * 1000 + 1500, `and soon after it (${ms} ms)`);
  t.equal(fb.evidence.connectDeadlineMs, DEADLINE_S * 1000);
  t.equal(report.summary.unmatched, 0);
});

t.test('blackhole past the profile threshold: the fallback worked but too slowly, and fails', async (t) => {
  // the agent waits 2 s for the proxy; its profile allows 1 s to be on the fallback route
  const { get, report } = await run(t, def('hole', 'availability: blackhole\n'), ['hole'], ['ras'], 1);
  const fb = get('hole', 'fallback');
  t.equal(fb.outcome, 'fail');
  t.match(fb.message, /too slow: the profile allows 1000 ms \(proxyUnreachable\.fallbackWithinSeconds\)/);
  t.equal(fb.evidence.fallbackWithinMs, 1000);
  t.equal(fb.evidence.sessionWorked, true, 'the route itself worked');
  t.equal(report.summary.unmatched, 0, 'the oracle sees the deadline is past the threshold');
});

t.test('unresolvable: the proxy name does not resolve on the machine; no DNS query leaves it', async (t) => {
  const { get, report } = await run(t, def('noname', 'availability: unresolvable\n'), ['noname']);
  const connect = get('noname', 'connect');
  t.equal(connect.outcome, 'fail');
  t.match(connect.message, /proxy host proxy-noname\.down\.proxycheck\.test does not resolve/);
  t.equal(connect.evidence.errorCode, 'ENOTFOUND');
  t.equal(get('noname', 'fallback').outcome, 'pass');
  t.equal(report.summary.unmatched, 0);
});

t.test('auth-loop: 407 to every credential is a proxy that is up: no fallback', async (t) => {
  const { get, report } = await run(t, def('loop', 'availability: auth-loop\n'), ['loop']);
  const connect = get('loop', 'connect');
  t.equal(connect.outcome, 'fail');
  t.match(connect.message, /407/);
  const fb = get('loop', 'fallback');
  t.equal(fb.outcome, 'skip');
  t.match(fb.message, /^the proxy was up \(it answered "HTTP\/1\.1 407/);
  t.equal(report.summary.unmatched, 0);
});

t.test('auth-loop on squid: the same verdicts', squid, async (t) => {
  const { get, report } = await run(
    t,
    { 'sq-loop.yaml': 'id: sq-loop\nengine: squid\nruntime: process\navailability: auth-loop\n' },
    ['sq-loop'],
  );
  t.match(get('sq-loop', 'connect').message, /407/);
  t.equal(get('sq-loop', 'fallback').outcome, 'skip');
  t.equal(report.summary.unmatched, 0);
});

t.test('dies: the tunnel is cut mid-session; the agent recovers through auto detect', async (t) => {
  const { get } = await run(t, def('dying', 'availability: dies\ndiesAfterSeconds: 0.5\n'), ['dying']);
  t.equal(get('dying', 'connect').outcome, 'pass', 'the proxy was up at first');
  const fb = get('dying', 'fallback');
  t.equal(fb.outcome, 'pass', fb.message);
  t.match(fb.message, /^the proxy died during the session: a new connection now fails \(.*ECONNREFUSED/);
  t.match(fb.evidence, { recovery: true, route: 'direct (auto detect)', sessionWorked: true });
  t.ok((fb.evidence.fallbackMs as number) < 1000, `recovered ${fb.evidence.fallbackMs} ms after the break`);
  // the session through the proxy really broke, and says so
  const broke = ['payload', 'tunnel-keepalive'].map((c) => get('dying', c).outcome);
  t.ok(broke.includes('fail'), `the broken session is not hidden: ${broke.join(', ')}`);
});

const pacDef = (id: string, pac: string, extra = '') => ({
  [`${id}.yaml`]: `id: ${id}\nengine: chain\navailability: refused\nclient:\n  autoDetect: wpad\n  pacFile: ${id}.pac\n${extra}`,
  [`${id}.pac`]: pac,
  'backup.yaml': 'id: backup\nengine: chain\n',
});

t.test('WPAD script with a dead first entry: the agent moves on to the working proxy', async (t) => {
  const { get, report } = await run(
    t,
    pacDef(
      'list',
      'function FindProxyForURL(url, host) {\n  if (shExpMatch(host, "*.proxycheck.test") && isInNet(dnsResolve(host), "127.0.0.0", "255.0.0.0"))\n    return "PROXY 127.0.0.1:9; PROXY {{proxy:backup}}; DIRECT";\n  return "DIRECT";\n}\n',
    ),
    ['list'],
  );
  const fb = get('list', 'fallback');
  t.equal(fb.outcome, 'pass', fb.message);
  t.match(fb.evidence, { method: 'wpad', pacSource: 'http://wpad.proxycheck.test/wpad.dat' });
  t.match(fb.evidence.pacAnswer, /^PROXY 127\.0\.0\.1:9; PROXY 127\.0\.0\.1:\d+; DIRECT$/);
  const tried = fb.evidence.tried as Array<{ route: string; outcome: string }>;
  t.equal(tried.length, 1, 'one dead entry before the route');
  t.equal(tried[0]?.route, 'PROXY 127.0.0.1:9');
  t.match(tried[0]?.outcome, /^unreachable: ECONNREFUSED/);
  t.match(
    fb.evidence.route,
    /^PROXY 127\.0\.0\.1:\d+ \(backup\)$/,
    'the route names the proxy the script named',
  );
  t.match(fb.evidence.routeConnect, /200/);
  t.equal(report.summary.unmatched, 0, 'the oracle predicts the route through the backup proxy');
});

t.test('the built-in down-pac: WPAD names chain-plain, and the evidence says so', async (t) => {
  const { get, report } = await run(t, {}, ['down-pac']);
  const fb = get('down-pac', 'fallback');
  t.equal(fb.outcome, 'pass', fb.message);
  t.match(fb.evidence.route, /^PROXY 127\.0\.0\.1:\d+ \(chain-plain\)$/);
  t.match(fb.message, /took PROXY 127\.0\.0\.1:\d+ \(chain-plain\), on it \d+ ms after the first attempt/);
  t.equal(report.summary.unmatched, 0);
});

t.test('a script that answers DIRECT, and DIRECT blocked by the firewall', async (t) => {
  const direct = await run(t, pacDef('pdirect', 'function FindProxyForURL(u, h) { return "DIRECT"; }\n'), [
    'pdirect',
  ]);
  t.equal(direct.get('pdirect', 'fallback').outcome, 'pass');
  t.match(direct.get('pdirect', 'fallback').evidence, { pacAnswer: 'DIRECT', route: 'direct (auto detect)' });
  const blocked = await run(
    t,
    pacDef(
      'pblocked',
      'function FindProxyForURL(u, h) { return "PROXY 127.0.0.1:9; DIRECT"; }\n',
      '  direct: blocked\n',
    ),
    ['pblocked'],
  );
  const fb = blocked.get('pblocked', 'fallback');
  t.equal(fb.outcome, 'fail');
  t.match(
    fb.message,
    /no route worked: PROXY 127\.0\.0\.1:9 \(unreachable: .*\), DIRECT \(blocked: the machine's firewall/,
  );
  t.equal(blocked.get('pblocked', 'payload').outcome, 'dependency_fail');
  t.equal(blocked.report.summary.unmatched, 0);
});

t.test('a script that throws, does not parse, or cannot be fetched is an error, never DIRECT', async (t) => {
  const throws = await run(
    t,
    pacDef('pthrows', 'function FindProxyForURL(u, h) { throw new Error("no route for " + h); }\n'),
    ['pthrows'],
  );
  const a = throws.get('pthrows', 'fallback');
  t.equal(a.outcome, 'fail');
  t.match(
    a.message,
    /could not use its proxy script http:\/\/wpad\.proxycheck\.test\/wpad\.dat: throws: .*no route for ras\.proxycheck\.test/,
  );
  t.equal(a.evidence.pacStage, 'throws');
  t.equal(throws.get('pthrows', 'payload').outcome, 'dependency_fail', 'nothing ran DIRECT behind its back');

  const syntax = await run(t, pacDef('psyntax', 'function FindProxyForURL(u, h) { return "DIRECT" \n'), [
    'psyntax',
  ]);
  t.equal(syntax.get('psyntax', 'fallback').evidence.pacStage, 'syntax');
  t.equal(syntax.get('psyntax', 'fallback').outcome, 'fail');

  const fetch = await run(
    t,
    def(
      'pfetch',
      'availability: refused\nclient:\n  autoDetect: pac\n  pacUrl: http://pac.nowhere.proxycheck.test/proxy.pac\n',
    ),
    ['pfetch'],
  );
  const f = fetch.get('pfetch', 'fallback');
  t.equal(f.outcome, 'fail');
  t.equal(f.evidence.pacStage, 'fetch');
  t.match(f.message, /pac\.nowhere\.proxycheck\.test/);
  t.equal(fetch.report.summary.unmatched, 0);
});

t.test('WPAD that finds no host: auto detect goes DIRECT, and says why', async (t) => {
  const { get } = await run(t, def('nowpad', 'availability: refused\nclient:\n  autoDetect: wpad\n'), [
    'nowpad',
  ]);
  const fb = get('nowpad', 'fallback');
  t.equal(fb.outcome, 'pass');
  t.match(
    fb.evidence.discovery,
    /^WPAD found no proxy script \(wpad\.proxycheck\.test does not resolve\): DIRECT$/,
  );
});

t.test('fail-closed agents stay offline, citing that their sources document no fallback', async (t) => {
  const { get, report } = await run(t, def('gone', 'availability: refused\n'), ['gone'], ['servicebus']);
  const c = report.results.find((r) => r.proxy === 'gone' && r.check === 'connect');
  t.ok(c, 'a connect result');
  t.equal(c?.outcome, 'fail');
  t.match(c?.message, /stays offline until the proxy is back: its sources \(.*\) document no fallback/);
  t.equal(c?.evidence.fallback, 'none (fail-closed)');
  t.notOk(
    report.results.some((r) => r.check === 'fallback'),
    'no fallback row for an agent that has none',
  );
  t.equal(report.summary.unmatched, 0);
  t.equal(get('gone', 'connect', c?.endpoint).outcome, 'fail');
});
