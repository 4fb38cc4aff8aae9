/**
 * `run --baseline FILE` / `--update-baseline` over real runs of the fixture scenarios: the file's
 * shape and stability, each direction of difference with its exit code, and bad baseline files.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { parse as parseYaml } from 'yaml';
import { UsageError } from '../harness/errors.ts';
import { OUTCOMES } from '../harness/model.ts';
import {
  BASELINE_SCHEMA,
  compareBaseline,
  formatBaseline,
  parseBaseline,
  prepareBaseline,
} from '../harness/runner/baseline.ts';
import { selectionScope } from '../harness/runner/shard.ts';
import { loadScenarios } from '../harness/scenarios.ts';
import { cli } from './helpers/cli.ts';
import { resultsPerProxy } from './helpers/counts.ts';
import { labNet } from './helpers/lab-net.ts';
import { outDir, scenarioCopy } from './helpers/scenario-copy.ts';

const VERSION: string = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')).version;

interface Report {
  results: Array<{ id: string; outcome: string; matched: boolean }>;
}
const outcomes = (r: Report) => new Map(r.results.map((x) => [x.id, x.outcome]));

/** `run(dir, args, json)`: `proxycheck run` on a lab net held for test `t`, with a --json report. */
async function runner(t: Test) {
  const net = String(await labNet(t));
  return async (dir: string, args: string[], json: string) => {
    const r = await cli(['run', '--lab-net', net, '--scenarios', dir, '--json', json, ...args], {
      timeoutMs: 90_000,
    });
    const report: Report = existsSync(json) ? JSON.parse(readFileSync(json, 'utf8')) : { results: [] };
    return { ...r, report };
  };
}

t.test(
  'baseline file: sorted, stable; then a profile gone (missing), one added (new), narrower selections',
  async (t) => {
    const run = await runner(t);
    const out = outDir(t);
    const file = join(out, 'baseline.yaml');
    const dir = scenarioCopy(t);
    const set = loadScenarios({ dir });
    const sel = ['--proxies', 'chain-plain', '--baseline', file];

    const first = await run(dir, [...sel, '--update-baseline'], join(out, 'a.json'));
    t.equal(first.code, 0, first.stderr);
    const base = outcomes(first.report);
    t.ok(base.size > 0);
    t.match(first.stdout, `baseline ${file} written: ${base.size} rows (${base.size} from this run)`);
    const text = readFileSync(file, 'utf8');
    const lines = text.trimEnd().split('\n');
    t.equal(lines.filter((l) => l.startsWith('#')).length, 3, 'three header comment lines');
    t.match(text, `# Written by proxycheck ${VERSION}.`);
    t.notMatch(text, /\d{4}-\d{2}-\d{2}/, 'no date in the file');
    const rows = lines.slice(lines.indexOf('results:') + 1);
    t.equal(rows.length, base.size, 'one line per result');
    const ids = rows.map((l) => l.trim().split(': ')[0] ?? '');
    t.same(
      ids,
      [...ids].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)),
      'sorted by id',
    );
    for (const l of rows) t.match(l, /^ {2}[^ ]+: [a-z_]+$/);
    const doc = parseYaml(text);
    t.equal(doc.schema, BASELINE_SCHEMA);
    t.same(new Map(Object.entries(doc.results)), base, 'a YAML reader sees the outcomes of the run');

    const second = await run(dir, [...sel, '--update-baseline'], join(out, 'b.json'));
    t.equal(second.code, 0, second.stderr);
    t.equal(readFileSync(file, 'utf8'), text, 'byte-identical after a second run');
    t.match(second.stdout, `baseline ${file} unchanged`);

    const same = await run(dir, sel, join(out, 'c.json'));
    t.equal(same.code, 0, same.stderr);
    t.match(same.stdout, `0 regressed, 0 improved, 0 changed, 0 missing, 0 new, ${base.size} unchanged\n`);
    t.match(same.stdout, 'baseline: same outcomes');

    // Profile "pinned" removed, "extra" added: the baseline's pinned rows are missing, extra's are new.
    const extra = readFileSync(join(dir, 'profiles', 'unpinned.yaml'), 'utf8').replace(
      'id: unpinned',
      'id: extra',
    );
    const swapped = scenarioCopy(t, { 'profiles/pinned.yaml': null, 'profiles/extra.yaml': extra });
    const r = await run(swapped, sel, join(out, 'd.json'));
    t.equal(r.code, 1, 'missing rows: exit 1');
    const swappedCount = resultsPerProxy(loadScenarios({ dir: swapped }));
    t.match(r.stdout, `; ${swappedCount} as expected, 0 not\n`, 'every result matched its expectation');
    const gone = [...base.keys()].filter((id) => id.startsWith('chain-plain/pinned/'));
    const added = r.report.results.filter((x) => x.id.startsWith('chain-plain/extra/'));
    t.ok(gone.length > 0 && added.length > 0);
    t.match(r.stdout, `0 regressed, 0 improved, 0 changed, ${gone.length} missing, ${added.length} new`);
    for (const id of gone)
      t.match(r.stdout, `  missing   ${id}: ${base.get(id)} in the baseline, not produced by this run\n`);
    for (const x of added) t.match(r.stdout, `  new       ${x.id}: ${x.outcome}, not in the baseline\n`);
    t.match(r.stdout, 'baseline: REGRESSED');

    // A narrower selection compares only its own rows.
    const one = await run(dir, [...sel, '--profiles', 'unpinned'], join(out, 'e.json'));
    t.equal(one.code, 0, one.stdout);
    const mine = [...base.keys()].filter((id) => id.startsWith('chain-plain/unpinned/')).length;
    t.match(
      one.stdout,
      `0 missing, 0 new, ${mine} unchanged; ${base.size - mine} baseline rows outside this selection not compared`,
    );

    // Sharded: chain-plain x (extra, odd-port, unpinned) in two shards is [extra] and [odd-port,
    // unpinned]. The vanished profile is in no shard's work: shard 1 alone reports it, not shard 2.
    const s2 = await run(swapped, [...sel, '--shard', '2/2'], join(out, 'f.json'));
    t.equal(s2.code, 0, s2.stdout);
    t.match(
      s2.stdout,
      `(proxies chain-plain; profiles all; shard 2/2): 0 regressed, 0 improved, 0 changed, 0 missing, 0 new, ${resultsPerProxy(set, ['odd-port', 'unpinned'])} unchanged; ${resultsPerProxy(set, ['pinned'])} baseline rows outside this selection not compared`,
    );
    const shard1 = selectionScope({
      proxies: ['chain-plain'],
      profiles: ['extra', 'odd-port', 'unpinned'],
      allProfiles: true,
      shard: { index: 1, count: 2 },
    });
    t.ok(
      gone.every((id) => shard1(id)),
      'shard 1 owns the rows of the vanished profile',
    );
  },
);

t.test(
  'a new failure exits 1 even when every result matched its expectation; a new pass exits 5',
  async (t) => {
    // chain-mitm on the unpinned profile: when the agents trust the corporate CA, payload and headers
    // go through; when they do not, the agent refuses the session and both are dependency_fail.
    const run = await runner(t);
    // the oracle predicts both from chain-mitm's definition and whether the agents trust its CA
    const trustedDir = scenarioCopy(t);
    const untrustedDir = scenarioCopy(t);
    const out = outDir(t);
    const file = join(out, 'baseline.yaml');
    const sel = ['--proxies', 'chain-mitm', '--profiles', 'unpinned', '--baseline', file];
    const n = resultsPerProxy(loadScenarios({ dir: trustedDir }), ['unpinned']);
    const trust = '--trust-corporate-ca';

    const trusted = await run(trustedDir, [...sel, trust, '--update-baseline'], join(out, 't.json'));
    t.equal(trusted.code, 0, trusted.stdout);
    const worse = await run(untrustedDir, sel, join(out, 'u.json'));
    const was = outcomes(trusted.report);
    const now = outcomes(worse.report);
    const differing = [...now.keys()].filter((id) => now.get(id) !== was.get(id));
    t.ok(differing.includes('chain-mitm/unpinned/open.proxycheck.test:443/payload'), 'payload differs');
    t.ok(
      differing.every((id) => was.get(id) === 'pass' && now.get(id) === 'dependency_fail'),
      'pass -> dependency_fail',
    );

    t.equal(worse.code, 1, 'regressed: exit 1');
    t.match(worse.stdout, `; ${n} as expected, 0 not\n`, 'every result matched its expectation');
    t.match(worse.stdout, `${differing.length} regressed, 0 improved, 0 changed, 0 missing, 0 new`);
    for (const id of differing) t.match(worse.stdout, `  regressed ${id}: pass -> dependency_fail\n`);
    t.match(worse.stdout, 'baseline: REGRESSED');

    // Accept the new state: --update-baseline shows what changes, writes, and exits by expectations.
    const accept = await run(untrustedDir, [...sel, '--update-baseline'], join(out, 'v.json'));
    t.equal(accept.code, 0, accept.stdout);
    for (const id of differing) t.match(accept.stdout, `  regressed ${id}: pass -> dependency_fail\n`);
    t.match(accept.stdout, `baseline ${file} updated: ${n} rows (${n} from this run)`);
    for (const id of differing) t.match(readFileSync(file, 'utf8'), `  ${id}: dependency_fail\n`);

    // The trusted run against it is better: the baseline is stale. --quiet: two lines, no stderr.
    const better = await run(trustedDir, [...sel, trust, '--quiet'], join(out, 'w.json'));
    t.equal(better.code, 5, 'stale: exit 5');
    t.equal(better.stderr, '');
    const q = better.stdout.trimEnd().split('\n');
    t.equal(q.length, 2, better.stdout);
    t.match(q[0], new RegExp(`^${n} results: .*; ${n} as expected, 0 not$`));
    t.equal(
      q[1],
      `baseline ${file} (proxies chain-mitm; profiles unpinned): 0 regressed, ${differing.length} improved, 0 changed, 0 missing, 0 new, ${n - differing.length} unchanged`,
    );
  },
);

t.test('bad baseline input: one line, exit 2, nothing run', async (t) => {
  const net = String(await labNet(t));
  const out = outDir(t);
  const dir = scenarioCopy(t);
  const write = (name: string, text: string) => {
    writeFileSync(join(out, name), text);
    return join(out, name);
  };
  const notBaseline = write('notes.txt', 'important notes\n');
  for (const [args, message] of [
    [['--baseline', join(out, 'nope.yaml')], /no such file \(write one with --update-baseline\)/],
    [['--baseline', notBaseline, '--update-baseline'], /notes\.txt: not a proxycheck baseline/],
    [['--update-baseline'], /--update-baseline needs --baseline FILE/],
  ] as const) {
    const r = await cli(['run', '--lab-net', net, '--scenarios', dir, '--proxies', 'chain-plain', ...args]);
    t.equal(r.code, 2, args.join(' '));
    t.equal(r.stdout, '', 'nothing ran');
    t.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    t.match(r.stderr, message);
    t.notMatch(r.stderr, /\n\s+at /);
  }
  t.equal(
    readFileSync(notBaseline, 'utf8'),
    'important notes\n',
    'a file that is not a baseline is left alone',
  );

  for (const [name, text, message] of [
    ['bad.yaml', 'results: [\n', /not valid YAML/],
    ['schema.yaml', 'schema: other@1\nresults: {}\n', /not a proxycheck baseline .*schema is "other@1"/],
    ['list.yaml', `schema: ${BASELINE_SCHEMA}\nresults: [a, b]\n`, /"results" must be a mapping/],
    ['outcome.yaml', `schema: ${BASELINE_SCHEMA}\nresults:\n  a/b/c:443/x: great\n`, /outcome "great"/],
    ['id.yaml', `schema: ${BASELINE_SCHEMA}\nresults:\n  connect: pass\n`, /"connect" is not a result id/],
    ['extra.yaml', `schema: ${BASELINE_SCHEMA}\nresults: {}\nwhen: today\n`, /unknown key "when"/],
    ['dup.yaml', `schema: ${BASELINE_SCHEMA}\nresults:\n  a/b/c: pass\n  a/b/c: fail\n`, /not valid YAML/],
  ] as const) {
    const f = write(name, text);
    for (const update of [false, true]) {
      const e = t.throws(() => prepareBaseline(f, update)) as Error;
      t.type(e, UsageError);
      t.match(e.message, message);
      t.notMatch(e.message, /\n/, 'one line');
    }
  }
  t.throws(() => prepareBaseline(join(out, 'no-dir', 'b.yaml'), true), /directory .*no-dir does not exist/);
  t.equal(prepareBaseline(join(out, 'new.yaml'), true), undefined, '--update-baseline may create the file');
});

t.test(
  'format and parse round-trip any result id; outcome ranks decide regressed/improved/changed',
  async (t) => {
    const rows = new Map([
      ['p/q/[::1]:443/connect', 'pass'],
      ['p/q/host.test:443#second/headers', 'fail'],
      ['p/q/a: b/x', 'warn'],
      ['p/q/h:1/check', 'skip'],
    ] as const);
    const text = formatBaseline(new Map(rows), '9.9.9');
    t.same(parseBaseline(text, 'x'), new Map(rows));
    t.equal(formatBaseline(parseBaseline(text, 'x'), '9.9.9'), text);
    for (const o of OUTCOMES)
      t.equal(parseBaseline(`schema: ${BASELINE_SCHEMA}\nresults:\n  a/b/c: ${o}\n`, 'x').get('a/b/c'), o);
    const d = compareBaseline(
      new Map([
        ['a/b/e/1', 'pass'],
        ['a/b/e/2', 'fail'],
        ['a/b/e/3', 'fail'],
        ['a/b/e/4', 'warn'],
        ['a/b/e/5', 'pass'],
        ['a/c/e/1', 'pass'],
      ]),
      [
        { id: 'a/b/e/1', outcome: 'setup_fail' },
        { id: 'a/b/e/2', outcome: 'pass' },
        { id: 'a/b/e/3', outcome: 'dependency_fail' },
        { id: 'a/b/e/4', outcome: 'warn' },
        { id: 'a/b/e/6', outcome: 'skip' },
      ],
      (id) => id.startsWith('a/b/'),
    );
    t.same(
      [d.regressed, d.improved, d.changed, d.missing, d.added].map((xs) => xs.map((x) => x.id)),
      [['a/b/e/1'], ['a/b/e/2'], ['a/b/e/3'], ['a/b/e/5'], ['a/b/e/6']],
    );
    t.equal(d.unchanged, 1);
    t.equal(d.notCompared, 1);
  },
);
