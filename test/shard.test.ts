/**
 * `--shard i/n`: the split over the real proxy and profile lists, real sharded runs whose union is
 * the unsharded run, --update-baseline merged shard by shard, and bad values.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { proxyIds } from '../harness/proxies/registry.ts';
import { itemKey, parseShard, shardItems, type WorkItem, workItems } from '../harness/runner/shard.ts';
import { loadScenarios } from '../harness/scenarios.ts';
import { cli } from './helpers/cli.ts';
import { labNet } from './helpers/lab-net.ts';
import { outDir, scenarioCopy } from './helpers/scenario-copy.ts';

const keys = (items: WorkItem[]) => items.map((w) => itemKey(w.proxy, w.profile));

t.test(
  'over the real proxies and profiles, shards 1..n are disjoint, cover the matrix, and are balanced',
  async (t) => {
    const proxies = proxyIds();
    const profiles = [...loadScenarios().profiles.keys()];
    t.ok(proxies.length > 1 && profiles.length > 0);
    const all = workItems(proxies, profiles);
    t.equal(all.length, proxies.length * profiles.length);
    // The order --proxies was typed in does not matter.
    t.same(keys(workItems([...proxies].reverse(), [...profiles].reverse())), keys(all));
    for (let n = 1; n <= 12; n++) {
      const shards = Array.from({ length: n }, (_, i) => keys(shardItems(all, { index: i + 1, count: n })));
      const union = shards.flat();
      t.equal(new Set(union).size, union.length, `n=${n}: disjoint`);
      t.same(new Set(union), new Set(keys(all)), `n=${n}: union is the whole matrix`);
      const sizes = shards.map((s) => s.length);
      t.ok(Math.max(...sizes) - Math.min(...sizes) <= 1, `n=${n}: sizes ${sizes} differ by at most one`);
      // A proxy is started in one shard, or two where a boundary falls inside its pairs.
      const starts = shards.reduce((sum, s) => sum + new Set(s.map((k) => k.split('/')[0])).size, 0);
      t.ok(starts <= proxies.length + n - 1, `n=${n}: ${starts} proxy starts for ${proxies.length} proxies`);
    }
  },
);

t.test('adding a profile moves no proxy to another shard', async (t) => {
  const proxies = proxyIds();
  const profiles = [...loadScenarios().profiles.keys()];
  for (const added of ['aaa-first', 'zzz-last']) {
    for (let n = 2; n <= 6; n++) {
      const shardsOf = (ps: string[]) => {
        const m = new Map<string, Set<number>>();
        for (let i = 1; i <= n; i++)
          for (const w of shardItems(workItems(proxies, ps), { index: i, count: n }))
            m.set(w.proxy, (m.get(w.proxy) ?? new Set()).add(i));
        return m;
      };
      const before = shardsOf(profiles);
      const after = shardsOf([...profiles, added]);
      let changed = 0;
      for (const p of proxies) {
        const b = before.get(p) ?? new Set();
        const a = after.get(p) ?? new Set();
        t.ok(
          [...a].some((i) => b.has(i)),
          `${added}, n=${n}: ${p} keeps a shard it had`,
        );
        if ([...a].sort().join() !== [...b].sort().join()) changed += 1;
      }
      // Only a proxy sitting on one of the n-1 boundaries may be split differently.
      t.ok(changed <= n - 1, `${added}, n=${n}: ${changed} proxies split differently`);
    }
  }
});

t.test(
  'sharded runs: union is the unsharded run, each starts only its proxies; baselines merge',
  async (t) => {
    const net = String(await labNet(t));
    const dir = scenarioCopy(t);
    const out = outDir(t);
    const sel = ['run', '--lab-net', net, '--scenarios', dir, '--proxies', 'chain-plain,chain-mitm'];
    const full = await cli(
      [...sel, '--json', join(out, 'full.json'), '--baseline', join(out, 'full.yaml'), '--update-baseline'],
      {
        timeoutMs: 90_000,
      },
    );
    t.equal(full.code, 0, full.stdout + full.stderr);
    const fullReport = JSON.parse(readFileSync(join(out, 'full.json'), 'utf8'));
    const fullOutcomes = new Map<string, string>(
      fullReport.results.map((r: { id: string; outcome: string }) => [r.id, r.outcome]),
    );
    const profiles = [...loadScenarios({ dir }).profiles.keys()];
    const items = workItems(['chain-plain', 'chain-mitm'], profiles);
    t.equal(items.length, 2 * profiles.length, 'two proxies x every fixture profile');

    const seen: string[] = [];
    for (let i = 1; i <= 3; i++) {
      const json = join(out, `shard${i}.json`);
      // Every shard updates the same file in turn: the merge keeps the rows of the other shards.
      const r = await cli(
        [
          ...sel,
          '--shard',
          `${i}/3`,
          '--json',
          json,
          '--baseline',
          join(out, 'sharded.yaml'),
          '--update-baseline',
        ],
        {
          timeoutMs: 90_000,
        },
      );
      t.equal(r.code, 0, r.stdout + r.stderr);
      const mine = shardItems(items, { index: i, count: 3 });
      t.match(
        r.stderr,
        `proxycheck: shard ${i}/3: ${mine.length} of ${items.length} proxy x profile work items\n`,
      );
      const report = JSON.parse(readFileSync(json, 'utf8'));
      const ids: string[] = report.results.map((x: { id: string }) => x.id);
      seen.push(...ids);
      t.same(
        new Set(ids.map((id) => id.split('/').slice(0, 2).join('/'))),
        new Set(keys(mine)),
        `shard ${i} ran exactly its work items`,
      );
      t.same(
        report.proxies.map((p: { id: string }) => p.id).sort(),
        [...new Set(mine.map((w) => w.proxy))].sort(),
        `shard ${i} started only the proxies it needs`,
      );
      for (const x of report.results as Array<{ id: string; outcome: string }>)
        t.equal(x.outcome, fullOutcomes.get(x.id), `${x.id}: same outcome as unsharded`);
    }
    t.equal(new Set(seen).size, seen.length, 'shards are disjoint');
    t.same(new Set(seen), new Set(fullOutcomes.keys()), 'their union is the unsharded run');
    t.equal(
      readFileSync(join(out, 'sharded.yaml'), 'utf8'),
      readFileSync(join(out, 'full.yaml'), 'utf8'),
      'shard-by-shard --update-baseline gives the same bytes as one unsharded update',
    );
  },
);

t.test('bad --shard values: one line, exit 2', async (t) => {
  for (const v of ['0/3', '4/3', 'abc', '1/0', '3', '1/2/3', '-1/2', '1.5/3']) {
    t.throws(() => parseShard(v), new RegExp(`--shard must be i/n .*not "${v.replace('.', '\\.')}"`));
  }
  t.same(parseShard('2/4'), { index: 2, count: 4 });
  t.same(parseShard('1/1'), { index: 1, count: 1 });
  const net = String(await labNet(t));
  for (const v of ['0/3', '4/3', 'abc']) {
    const r = await cli(['run', '--lab-net', net, '--shard', v]);
    t.equal(r.code, 2, v);
    t.equal(r.stdout, '');
    t.equal(
      r.stderr,
      `proxycheck: --shard must be i/n with 1 <= i <= n <= 1000 (e.g. 2/4 for the second of four jobs), not "${v}"\n`,
    );
  }
});
