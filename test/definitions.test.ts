/**
 * Proxy definitions: loaded and checked as data (one-line errors naming the file, the engine and
 * the knob), given by path, predicted by the oracle (held to the release baseline), and their
 * deviations watched: one that no longer happens is reported and the run is red.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { parse } from 'yaml';
import { kindOf } from '../harness/agent/kinds/index.ts';
import { labAddress } from '../harness/lab/addresses.ts';
import { pacOf } from '../harness/proxies/engines.ts';
import { type AutoDetectAnswer, type OracleEnv, predict } from '../harness/proxies/oracle.ts';
import { proxyById } from '../harness/proxies/registry.ts';
import { scriptUrlFor, startClientNetwork } from '../harness/route/client-network.ts';
import { runMatrix } from '../harness/runner/run.ts';
import {
  catalogRow,
  type LoadedDefinition,
  loadScenarios,
  resolveHost,
  SCENARIOS_DIR,
  type ScenarioSet,
} from '../harness/scenarios.ts';
import { cli } from './helpers/cli.ts';
import { labNet } from './helpers/lab-net.ts';
import { scenarioCopy } from './helpers/scenario-copy.ts';

function tmp(t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'proxycheck-defs-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/**
 * What each built-in definition's auto detect answers (its proxy script run for real, as the
 * runner does before the work items), with stand-in addresses for the proxies the script names.
 */
async function autoDetectAnswers(set: ScenarioSet): Promise<OracleEnv['autoDetect']> {
  const answers = new Map<string, AutoDetectAnswer>();
  for (const def of set.proxies.values()) {
    const pac = pacOf(def);
    if (!pac) continue;
    const proxies = new Map<string, LoadedDefinition>();
    let text = pac.text;
    for (const [i, id] of pac.proxies.entries()) {
      const at = `127.0.0.${i + 1}:3128`;
      text = text.replaceAll(`{{proxy:${id}}}`, at);
      proxies.set(at, set.proxies.get(id) as LoadedDefinition);
    }
    const client = await startClientNetwork(def.client, {
      resolve: (h) => labAddress(h, 93),
      net: 93,
      pacText: text,
    });
    try {
      for (const p of set.profiles.values())
        for (const x of p.exchanges) {
          if (x.proxyUnreachable?.fallback !== 'auto-detect') continue;
          const host = resolveHost(x.host, set);
          const url = scriptUrlFor(host, x.port, kindOf(x).forwarded === true);
          answers.set(`${def.id}|${host}:${x.port}`, {
            discovery: await client.discover(url, host),
            proxies,
          });
        }
    } finally {
      await client.stop();
    }
  }
  return (proxyId, host, port) => answers.get(`${proxyId}|${host}:${port}`);
}

t.test(
  'the oracle predicts every outcome of the release baseline for every built-in definition',
  async (t) => {
    const set = loadScenarios();
    const autoDetect = await autoDetectAnswers(set);
    const base = parse(readFileSync(join(SCENARIOS_DIR, 'baselines', 'release.yaml'), 'utf8'))
      .results as Record<string, string>;
    const presets = new Set<string>();
    const wrong: string[] = [];
    let n = 0;
    for (const [id, outcome] of Object.entries(base)) {
      const [proxy, profile, endpoint, check] = id.split('/') as [string, string, string, string];
      presets.add(proxy);
      const def = set.proxies.get(proxy);
      t.ok(def, `${proxy} is a definition`);
      if (!def) continue;
      const [hp, name] = endpoint.split('#') as [string, string | undefined];
      const i = hp.lastIndexOf(':');
      const host = hp.slice(0, i);
      const port = Number(hp.slice(i + 1));
      const x = set.profiles
        .get(profile)
        ?.exchanges.find(
          (x) =>
            resolveHost(x.host, set) === host &&
            (x.port === port || x.failover?.port === port) &&
            x.name === name,
        );
      if (!x) {
        wrong.push(`${id}: no exchange`);
        continue;
      }
      const row = catalogRow(set, { ...x, port });
      const key = { proxy, profile, endpoint, check, port, kind: kindOf(x).id, host, exchange: x };
      const p = predict(def, { ...key, mustNotInspect: row.mustNotInspect, pinned: row.pinned }, set, {
        timeScale: 0.01,
        ...(autoDetect ? { autoDetect } : {}),
      });
      n++;
      // no prediction: the check's own default, pass (or skip where it does not apply)
      const ok = p ? p.expect === outcome : outcome === 'pass' || outcome === 'skip';
      if (!ok) wrong.push(`${id}: ${outcome}, predicted ${p?.expect ?? 'the default'}`);
    }
    t.same(
      [...presets].sort(),
      [...set.proxies.keys()].sort(),
      'the baseline covers every built-in definition',
    );
    t.ok(n > 2500, `${n} outcomes compared`);
    t.same(wrong, [], 'every baseline outcome is what the knobs (and engine traits) predict');
    for (const def of set.proxies.values())
      t.notOk(def.deviations?.length, `${def.id}: no deviation of its own`);
  },
);

t.test('bad definitions stop the run with one line naming the file, engine and knob', async (t) => {
  const dir = tmp(t);
  const cases: Array<[string, string, RegExp]> = [
    [
      'connect-answer.yaml',
      'id: x1\nengine: squid\nconnectAnswer: { version: HTTP/1.0 }\n',
      /engine squid cannot honour connectAnswer: squid writes its own/,
    ],
    [
      'leak.yaml',
      'id: x2\nengine: squid\nheaders: { proxyAuthorization: forward }\n',
      /engine squid cannot honour headers\.proxyAuthorization/,
    ],
    ['runtime.yaml', 'id: x3\nengine: chain\nruntime: container\n', /engine chain cannot honour runtime/],
    ['hosts.yaml', 'id: x4\nengine: chain\ninspection: { mode: only }\n', /inspection mode only needs hosts/],
    [
      'schema.yaml',
      'id: x5\nengine: nginx\n',
      /\/engine must be equal to one of the allowed values \(chain, squid\)/,
    ],
    ['unknown.yaml', 'id: x6\nengine: chain\nidleTimeout: 5\n', /must NOT have additional properties/],
    [
      'dev.yaml',
      'id: x7\nengine: chain\ndeviations:\n  - { match: { check: conect }, expect: fail, reason: a typo in the check name }\n',
      /\/deviations\/0\/match\/check "conect" is not a check/,
    ],
    ['dies.yaml', 'id: x8\nengine: chain\navailability: dies\n', /availability dies needs diesAfterSeconds/],
    [
      'pac-url.yaml',
      'id: x9\nengine: chain\nclient: { autoDetect: pac }\n',
      /client\.autoDetect pac needs client\.pacUrl/,
    ],
    [
      'pac-none.yaml',
      'id: x10\nengine: chain\nclient: { pacFile: x.pac }\n',
      /client\.pacFile needs client\.autoDetect wpad or pac/,
    ],
    [
      'pac-missing.yaml',
      'id: x11\nengine: chain\navailability: refused\nclient: { autoDetect: wpad, pacFile: missing.pac }\n',
      /client\.pacFile missing\.pac: ENOENT/,
    ],
    [
      'auth-loop.yaml',
      'id: x12\nengine: chain\nauth: basic\navailability: auth-loop\n',
      /availability auth-loop asks for credentials and rejects them all: leave auth out/,
    ],
    [
      'clash.yaml',
      'id: chain-plain\nengine: chain\n',
      /\/id "chain-plain" is already defined in .*scenarios\/proxies\/chain-plain\.yaml/,
    ],
  ];
  for (const [file, text, want] of cases) {
    const path = join(dir, file);
    writeFileSync(path, text);
    const r = await cli(['run', '--proxies', path, '--profiles', 'flexxagent-brazil']);
    t.equal(r.code, 2, `${file}: exit 2`);
    const lines = r.stderr.trim().split('\n');
    t.equal(lines.length, 1, `${file}: one line: ${r.stderr.trim()}`);
    t.match(lines[0], want, file);
    t.match(lines[0], file, `${file}: the line names the file`);
  }
  // a proxy script that names a proxy no definition describes
  writeFileSync(
    join(dir, 'names.pac'),
    'function FindProxyForURL(u, h) { return "PROXY {{proxy:nope}}"; }\n',
  );
  writeFileSync(
    join(dir, 'names.yaml'),
    'id: x13\nengine: chain\navailability: refused\nclient: { autoDetect: wpad, pacFile: names.pac }\n',
  );
  const names = await cli(['run', '--proxies', join(dir, 'names.yaml'), '--profiles', 'flexxagent-brazil']);
  t.equal(names.code, 2);
  t.match(
    names.stderr.trim(),
    /names\.yaml: names\.pac names \{\{proxy:nope\}\}, which is not a definition$/,
  );
  const missing = await cli(['run', '--proxies', join(dir, 'nope.yaml')]);
  t.equal(missing.code, 2);
  t.match(missing.stderr.trim(), /nope\.yaml: cannot read the proxy definition \(ENOENT\)$/);
  const unknown = await cli(['run', '--proxies', 'squid-defualt']);
  t.equal(unknown.code, 2);
  t.match(
    unknown.stderr,
    /unknown proxy "squid-defualt" \(known: blackhole-direct, chain-auth, chain-mitm, chain-plain, .*squid-splice, or a definition file\)/,
  );
});

t.test(
  'a scenario directory adds definitions; two with one id, or an expectations file for one, is an error',
  async (t) => {
    const dir = scenarioCopy(t);
    mkdirSync(join(dir, 'proxies'));
    writeFileSync(join(dir, 'proxies', 'mine.yaml'), 'id: mine\nengine: chain\nconnectPorts: [443]\n');
    const set = loadScenarios({ dir });
    t.ok(set.proxies.get('mine'), 'its own definition');
    t.ok(set.proxies.get('chain-mitm'), 'and the built-in ones');
    t.equal(proxyById('mine', { scenarios: set }).id, 'mine');
    writeFileSync(join(dir, 'proxies', 'mine-too.yaml'), 'id: mine\nengine: chain\n');
    t.throws(
      () => loadScenarios({ dir }),
      /proxies\/mine\.yaml: \/id "mine" is already defined in .*proxies\/mine-too\.yaml/,
    );
    rmSync(join(dir, 'proxies', 'mine-too.yaml'));
    mkdirSync(join(dir, 'expectations'), { recursive: true });
    writeFileSync(
      join(dir, 'expectations', 'mine.yaml'),
      'proxy: mine\nrules:\n  - { match: { check: connect }, expect: fail, reason: an old expectations file }\n',
    );
    const r = await cli(['run', '--scenarios', dir, '--proxies', 'mine', '--profiles', 'unpinned']);
    t.equal(r.code, 2);
    t.match(
      r.stderr.trim(),
      /expectations\/mine\.yaml: mine is a proxy definition \(.*mine\.yaml\); its expectations follow from its knobs/,
    );
  },
);

t.test(
  'a deviation that happens holds; one that no longer happens is reported and the run is red',
  async (t) => {
    const dir = tmp(t);
    const net = await labNet(t);
    // resets are not predicted (they depend on each exchange's bytes): the definition says what happens
    const holds = join(dir, 'reset-early.yaml');
    writeFileSync(
      holds,
      [
        'id: reset-early',
        'engine: chain',
        'faults: { resetAfterBytes: 12000 }',
        'deviations:',
        '  - match: { check: payload }',
        '    expect: fail',
        '    reason: the path resets every connection after 12000 bytes, after the TLS handshake and before the report is through',
        '  - match: { check: headers }',
        '    expect: dependency_fail',
        '    reason: the exchange broke before any request head came back',
        '',
      ].join('\n'),
    );
    const scen = scenarioCopy(t);
    const ok = await cli([
      'run',
      '--scenarios',
      scen,
      '--proxies',
      holds,
      '--profiles',
      'unpinned',
      '--lab-net',
      String(net),
      '--details',
    ]);
    t.equal(ok.code, 0, ok.stdout + ok.stderr);
    t.match(ok.stdout, /reset-early\s+unpinned\s+open\.proxycheck\.test:443\s+payload\s+FAIL\s+yes/);
    t.notMatch(ok.stdout, /deviation no longer happens/);

    // the same deviation on a path that no longer resets: reported, with where it is
    const stale = join(dir, 'reset-gone.yaml');
    writeFileSync(
      stale,
      readFileSync(holds, 'utf8')
        .replace('reset-early', 'reset-gone')
        .replace('faults: { resetAfterBytes: 12000 }\n', ''),
    );
    const json = join(dir, 'stale.json');
    const red = await cli([
      'run',
      '--scenarios',
      scen,
      '--proxies',
      stale,
      '--profiles',
      'unpinned',
      '--lab-net',
      String(net),
      '--json',
      json,
    ]);
    t.equal(red.code, 1, 'its results are not as expected');
    t.match(
      red.stdout,
      /reset-gone\.yaml: \/deviations\/0: deviation no longer happens: its 1 result\(s\) came out as the knobs predict, not fail/,
    );
    t.match(red.stdout, /reset-gone\.yaml: \/deviations\/1: deviation no longer happens/);
    const report = JSON.parse(readFileSync(json, 'utf8'));
    t.same(
      report.staleDeviations.map((d: { at: string; expect: string; results: number }) => [
        d.at.replace(dir, ''),
        d.expect,
        d.results,
      ]),
      [
        ['/reset-gone.yaml: /deviations/0', 'fail', 1],
        ['/reset-gone.yaml: /deviations/1', 'dependency_fail', 1],
      ],
    );
  },
);

t.test('run --proxies takes a definition file and predicts from it', async (t) => {
  const dir = tmp(t);
  const file = join(dir, 'only-443.yaml');
  writeFileSync(file, 'id: only-443\nengine: chain\nconnectPorts: [443]\n');
  const set = loadScenarios({ dir: scenarioCopy(t) });
  const report = await runMatrix({
    scenarios: set,
    proxies: [file],
    profiles: ['unpinned', 'odd-port'],
    labNet: await labNet(t),
  });
  const by = (id: string) => report.results.find((r) => r.id === id);
  t.equal(by('only-443/unpinned/open.proxycheck.test:443/connect')?.outcome, 'pass');
  const refused = by('only-443/odd-port/odd-port.proxycheck.test:13000/connect');
  t.equal(refused?.outcome, 'fail');
  t.equal(refused?.expected, 'fail', 'predicted from connectPorts');
  t.match(refused?.expectedReason, /port 13000 is not in connectPorts \(443\)/);
  t.match(refused?.message, /403/);
  t.equal(report.summary.unmatched, 0);
  t.equal(set.proxies.get('only-443')?.file, file, "the file joins the run's definitions");
});
