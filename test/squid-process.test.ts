/**
 * The squid fleet as plain processes: the five kinds against the flexxagent slice, the verdicts
 * users expect, setup_fail evidence when squid dies, and nothing left running.
 */
import t from 'tap';
import { SetupError } from '../harness/errors.ts';
import { startSquidProcess } from '../harness/proxies/squid/process.ts';
import { runMatrix } from '../harness/runner/run.ts';
import { labNet } from './helpers/lab-net.ts';
import { requireComponent, squidProblem } from './helpers/requirements.ts';
import { alive, assertFleetVerdicts, brokenLaunch, FLEET, squidChildrenOf } from './helpers/squid-fleet.ts';

const opts = requireComponent(t, 'squid', squidProblem());

t.test(
  'five squid kinds as processes give the expected verdicts',
  { ...opts, timeout: 120_000 },
  async (t) => {
    const seen = new Set<number>();
    const report = await runMatrix({
      proxies: FLEET,
      profiles: ['flexxagent'],
      runtime: 'process',
      labNet: await labNet(t),
      onResult: () => {
        for (const pid of squidChildrenOf(process.pid)) seen.add(pid);
      },
    });
    assertFleetVerdicts(t, report, 'process');
    t.equal(report.summary.unmatched, 0, 'every result as expected');
    t.ok(seen.size >= FLEET.length, `saw our squid processes while running (${seen.size})`);
    t.same(squidChildrenOf(process.pid), [], 'no squid child left');
    t.same([...seen].filter(alive), [], 'every squid we saw has exited');
  },
);

t.test(
  'a squid that dies at start is a SetupError with its stderr and config',
  { ...opts, timeout: 60_000 },
  async (t) => {
    const launch = await brokenLaunch((fn) => t.teardown(fn));
    const err = await startSquidProcess(launch).then(
      () => undefined,
      (e: unknown) => e,
    );
    t.ok(err instanceof SetupError, 'SetupError');
    const e = err as SetupError;
    t.match(
      e.message,
      /^squid-broken \(process\) exited \(code \d+\) before it was ready: .*undefined_acl_for_the_test/,
    );
    t.notMatch(e.message, /\n/, 'one line');
    t.match(String(e.evidence.stderr), /FATAL/, 'stderr in evidence');
    t.match(String(e.evidence.config), /undefined_acl_for_the_test/, 'config in evidence');
    t.match(String(e.evidence.command), /squid -N -d1 -f /);
    t.same(squidChildrenOf(process.pid), [], 'nothing left running');
  },
);
