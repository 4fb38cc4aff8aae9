/**
 * Work items run side by side under a bound (`jobs`), across proxies, with the same outcomes in the
 * same order as one after another; bad input still stops the run before any item runs.
 */
import t from 'tap';
import { UsageError } from '../harness/errors.ts';
import { runMatrix } from '../harness/runner/run.ts';
import { brokenProxy } from './helpers/adapters.ts';
import { labNet } from './helpers/lab-net.ts';

const PROXIES = ['chain-plain', 'chain-auth'];
const PROFILES = ['flexxagent-brazil', 'symantec', 'eset'];

async function run(net: number, jobs: number) {
  let inFlight = 0;
  let most = 0;
  const report = await runMatrix({
    proxies: PROXIES,
    profiles: PROFILES,
    labNet: net,
    timerWait: 2,
    jobs,
    onWorkItem: (phase) => {
      inFlight += phase === 'start' ? 1 : -1;
      most = Math.max(most, inFlight);
    },
  });
  return { report, most };
}

t.test(
  'jobs 1 and jobs 4: the same outcomes in the same order, items side by side only with 4',
  async (t) => {
    const net = await labNet(t);
    const one = await run(net, 1);
    const four = await run(net, 4);
    t.equal(one.most, 1, 'one item at a time');
    t.ok(four.most > 1, `items side by side (${four.most} in flight at most)`);
    const rows = (r: typeof one.report) =>
      r.results.map((x) => `${x.proxy} ${x.profile} ${x.endpoint} ${x.check}: ${x.outcome}`);
    t.ok(one.report.results.length > 50, `${one.report.results.length} results`);
    t.same(rows(four.report), rows(one.report));
    t.same(
      four.report.proxies.map((p) => p.id),
      PROXIES,
      'proxies in the order asked',
    );
  },
);

t.test('a proxy given as bad input stops the run with its error before any item runs', async (t) => {
  const net = await labNet(t);
  let items = 0;
  const bad = {
    ...brokenProxy('bad-input'),
    start: async () => {
      throw new UsageError('--proxy: bad input');
    },
  };
  await t.rejects(
    runMatrix({
      proxies: ['chain-plain', bad],
      profiles: ['symantec'],
      labNet: net,
      timerWait: 1,
      onWorkItem: () => items++,
    }),
    { message: '--proxy: bad input' },
  );
  t.equal(items, 0, 'no work item started');
});
