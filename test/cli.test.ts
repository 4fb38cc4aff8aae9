import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Ajv } from 'ajv';
import addFormats from 'ajv-formats';
import t from 'tap';
import { DEFAULT_PROXIES } from '../harness/proxies/registry.ts';
import { loadScenarios } from '../harness/scenarios.ts';
import { cli, foreground } from './helpers/cli.ts';
import { expectedResults } from './helpers/counts.ts';
import { labNet } from './helpers/lab-net.ts';

const RESULT_SCHEMA = JSON.parse(
  readFileSync(new URL('../scenarios/schema/result.schema.json', import.meta.url), 'utf8'),
);

t.test(
  'run: verdict table, JSON report valid against proxycheck/result@2, exit 0 when all matched',
  async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'proxycheck-cli-'));
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    const json = join(dir, 'report.json');
    // the main job is timed in `npm run bench`; here only its output matters
    const r = await cli(['run', '--lab-net', String(await labNet(t)), '--json', json], {
      timeoutMs: 240_000,
    });
    t.equal(r.code, 0, r.stderr);
    // a green run fits a screen: the verdict first, a profile x proxy matrix, no per-result table
    const lines = r.stdout.trimEnd().split('\n');
    t.ok(lines.length <= 40, `${lines.length} lines on stdout`);
    t.match(lines[0], /^OK: all \d+ results as expected$/, 'the verdict comes first');
    t.ok(
      lines.every((l) => l.length <= 120),
      'no line wider than 120 characters',
    );
    t.match(r.stdout, /^profile\s+chain-plain\s+chain-auth\s+chain-mitm\s+down-direct$/m);
    t.match(r.stdout, /^profile\s+down-pac\s+down-closed\s+blackhole-direct$/m);
    t.match(
      r.stdout,
      // chain-auth: 7 more, its proxy-auth on each tunnelled exchange
      /^flexxagent\s+35\/0\/0\s+42\/0\/0\s+7\/14\/14\s+0\/7\/28$/m,
      'pass/fail/other per cell',
    );
    t.notMatch(r.stdout, /PROXY\s+PROFILE\s+ENDPOINT/, 'no full table without --details');
    t.notOk(r.stdout.includes('\x1b['), 'no colour when stdout is not a terminal');
    const details = await cli([
      'run',
      '--lab-net',
      String(await labNet(t)),
      '--profiles',
      'flexxagent',
      '--details',
    ]);
    t.match(details.stdout, /PROXY\s+PROFILE\s+ENDPOINT\s+CHECK\s+OUTCOME/);
    t.match(
      details.stdout,
      /chain-mitm\s+flexxagent\s+west-eu\.agent-api\.analyzer\.flexxible\.com:443\s+pinning\s+FAIL\s+yes/,
    );
    // the main job: every profile through the three in-process proxies and the four that are down
    const mainJob = DEFAULT_PROXIES;
    const total = expectedResults(loadScenarios(), mainJob);
    t.match(r.stdout, new RegExp(`${total} results: .* ${total} as expected, 0 not`));
    const report = JSON.parse(readFileSync(json, 'utf8'));
    const ajv = new Ajv({ strict: false });
    addFormats.default(ajv);
    t.ok(ajv.validate(RESULT_SCHEMA, report), JSON.stringify(ajv.errors));
    t.same(
      report.proxies.map((p: { id: string }) => p.id),
      mainJob,
    );
    t.equal(report.results.length, total);
    // remote assistance falls back on the down proxies as the main job says
    const fb = (proxy: string) =>
      report.results.find(
        (x: { proxy: string; profile: string; check: string }) =>
          x.proxy === proxy && x.profile === 'remote-assistance' && x.check === 'fallback',
      );
    t.equal(fb('down-direct')?.outcome, 'pass');
    t.equal(fb('down-pac')?.outcome, 'pass');
    t.match(fb('down-pac')?.evidence.route, /\(chain-plain\)$/, 'the evidence names the second proxy');
    t.equal(fb('down-closed')?.outcome, 'fail');
    t.equal(fb('blackhole-direct')?.outcome, 'pass');
    t.ok(fb('blackhole-direct')?.evidence.fallbackMs >= 21_000, 'not before the 21 s connect deadline');
    for (const x of report.results.filter((x: { check: string }) => x.check === 'fallback'))
      if (x.outcome === 'skip')
        t.match(x.message, /^the proxy was up/, `${x.id}: skipped only because the proxy was up`);
    t.notMatch(readFileSync(json, 'utf8'), /BEGIN (RSA )?PRIVATE KEY/, 'no key material in the report');
  },
);

t.test('bad usage: one line on stderr, exit 2, no stack trace', async (t) => {
  for (const args of [
    ['run', '--proxies', 'nope'],
    ['run', '--profiles', 'nope'],
    ['frobnicate'],
    ['run', '--lab-net', '999'],
    ['run', '--bogus'],
    ['run', '--time-scale', '0'],
    ['run', '--time-scale', 'fast'],
    ['validate', '--proxy', 'http://127.0.0.1:9', '--time-scale', '-1'],
  ]) {
    const r = await cli(args);
    t.equal(r.code, 2, args.join(' '));
    t.equal(r.stderr.trim().split('\n').length, 1, `one line: ${r.stderr}`);
    t.match(r.stderr, /^proxycheck: /);
    t.notMatch(r.stderr, /\n\s+at /);
  }
});

t.test('--help lists the commands and options', async (t) => {
  const top = await cli(['--help']);
  t.equal(top.code, 0);
  for (const c of ['run', 'lab', 'list']) t.match(top.stdout, new RegExp(`\\n\\s+${c}\\b`));
  const run = await cli(['run', '--help']);
  for (const o of ['--proxies', '--profiles', '--json', '--trust-corporate-ca', '--lab-net', '--tenant'])
    t.match(run.stdout, o);
});

t.test('a run that does not match its expectations exits 1 and says which result and why', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'proxycheck-cli-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  cpSync(fileURLToPath(new URL('../scenarios/', import.meta.url)), dir, { recursive: true });
  // the scenario directory's chain-plain replaces the built-in one: a deviation reality does not meet
  writeFileSync(
    join(dir, 'proxies', 'chain-plain.yaml'),
    'id: chain-plain\nengine: chain\ndeviations:\n  - match: { check: payload }\n    expect: fail\n    reason: a stale expectation that reality no longer meets\n',
  );
  const r = await cli([
    'run',
    '--proxies',
    'chain-plain',
    '--lab-net',
    String(await labNet(t)),
    '--scenarios',
    dir,
    '--details',
  ]);
  t.equal(r.code, 1);
  t.match(r.stdout.split('\n')[0], /^NOT AS EXPECTED: \d+ of \d+ results$/, 'the verdict comes first');
  t.match(r.stdout, /payload\s+PASS\s+NO \(expected fail\)/);
  t.match(
    r.stdout,
    'chain-plain/flexxagent/west-eu.agent-api.analyzer.flexxible.com:443/payload: pass (expected fail: a stale expectation',
  );
  t.match(
    r.stdout,
    /chain-plain\.yaml: \/deviations\/0: deviation no longer happens: its \d+ result\(s\) came out as the knobs predict, not fail/,
  );
  const bad = await cli(['run', '--scenarios', join(dir, 'nope')]);
  t.equal(bad.code, 2);
  t.match(bad.stderr, /no catalogs\/ directory/);
});

t.test('lab hosts prints deterministic hosts-file lines for every catalog host', async (t) => {
  const a = await cli(['lab', 'hosts', '--lab-net', '77']);
  const b = await cli(['lab', 'hosts', '--lab-net', '77']);
  t.equal(a.code, 0);
  t.equal(a.stdout, b.stdout);
  t.match(a.stdout, '127.77.239.203\twest-eu.agent-api.analyzer.flexxible.com\n');
  t.match(a.stdout, /\tflxsbnamelab01\.servicebus\.windows\.net\n/);
  for (const line of a.stdout.trim().split('\n')) t.match(line, /^127\.77\.\d+\.\d+\t[a-z0-9.-]+$/);
});

t.test('lab up serves until SIGINT, then exits 130 and frees its ports', async (t) => {
  const octet = await labNet(t);
  const lab = await foreground(
    t,
    ['lab', 'up', '--lab-net', String(octet), '--profiles', 'flexxagent'],
    'lab is up',
  );
  const stdout = lab.stdout();
  const m = new RegExp(
    `https://west-eu\\.agent-api\\.analyzer\\.flexxible\\.com:443 on (127\\.${octet}\\.\\d+\\.\\d+)`,
  ).exec(stdout);
  t.ok(m, 'prints where each origin listens');
  const rootFile = /lab root CA \(what agents trust\): (\S+)/.exec(stdout)?.[1] ?? '';
  t.ok(existsSync(rootFile), 'the lab root is on disk while the lab is up');
  const address = m?.[1] ?? '';
  const probe = () =>
    new Promise<boolean>((resolve) => {
      const s = net.connect({ host: address, port: 443 }, () => {
        s.destroy();
        resolve(true);
      });
      s.on('error', () => resolve(false));
    });
  t.equal(await probe(), true, 'origin answers');
  lab.child.kill('SIGINT');
  t.equal(await lab.exited, 130);
  t.equal(await probe(), false, 'nothing listens after Ctrl-C');
  t.notOk(existsSync(rootFile), 'run directory removed');
});
