/**
 * The squid fleet in containers (testcontainers, host network): the five kinds against the
 * flexxagent slice, container logs as setup_fail evidence, and no container of ours left.
 */
import t from 'tap';
import { SetupError } from '../harness/errors.ts';
import { startSquidContainer } from '../harness/proxies/squid/container.ts';
import { runMatrix } from '../harness/runner/run.ts';
import { labNet } from './helpers/lab-net.ts';
import { containerEngineProblem, requireComponent } from './helpers/requirements.ts';
import { assertFleetVerdicts, brokenLaunch, containersLabelled, FLEET } from './helpers/squid-fleet.ts';

const opts = requireComponent(t, 'a container engine', await containerEngineProblem());
const ours = { proxycheck: '1', 'proxycheck.pid': String(process.pid) };

t.test(
  'five squid kinds in containers give the expected verdicts',
  { ...opts, timeout: 900_000 },
  async (t) => {
    // the first run may have to build the image (minutes); later runs start in well under a second
    const seen = new Set<string>();
    const report = await runMatrix({
      proxies: FLEET,
      profiles: ['flexxagent'],
      runtime: 'container',
      labNet: await labNet(t),
      onResult: () => {
        for (const id of containersLabelled(ours)) seen.add(id);
      },
    });
    assertFleetVerdicts(t, report, 'container');
    t.equal(report.summary.unmatched, 0, 'every result as expected');
    t.ok(seen.size >= FLEET.length, `saw our labelled containers while running (${seen.size})`);
    t.same(containersLabelled(ours), [], 'no container of ours left (running or stopped)');
  },
);

t.test(
  'a squid that dies at start: SetupError with the container logs',
  { ...opts, timeout: 300_000 },
  async (t) => {
    const launch = await brokenLaunch((fn) => t.teardown(fn));
    const err = await startSquidContainer(launch).then(
      () => undefined,
      (e: unknown) => e,
    );
    t.ok(err instanceof SetupError, 'SetupError');
    const e = err as SetupError;
    t.match(
      e.message,
      /^squid-broken \(container\) did not become ready \(deadline \d+ ms for .*\): .*undefined_acl_for_the_test/,
    );
    t.notMatch(e.message, /\n/, 'one line');
    t.match(String(e.evidence.containerLogs), /FATAL/, 'container logs in evidence');
    t.match(String(e.evidence.config), /undefined_acl_for_the_test/, 'config in evidence');
    t.same(containersLabelled(ours), [], 'the failed container was removed');
  },
);
