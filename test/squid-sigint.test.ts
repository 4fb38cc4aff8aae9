/**
 * SIGINT to a running `proxycheck run` stops every squid it started: no container with our label
 * and no squid process of ours remains, on both runtimes.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t, { type Test } from 'tap';
import { SQUID_READY } from '../harness/proxies/squid/config.ts';
import { labNet } from './helpers/lab-net.ts';
import { containerEngineProblem, requireComponent, squidProblem } from './helpers/requirements.ts';
import { alive, containersLabelled, squidChildrenOf } from './helpers/squid-fleet.ts';

const BIN = fileURLToPath(new URL('../bin/proxycheck.js', import.meta.url));

/** `proxycheck run` of two squids on a lab net of its own; killed, if still running, when `t` ends. */
async function startRun(t: Test, runtime: string): Promise<{ child: ChildProcess; output: () => string }> {
  const net = await labNet(t);
  const child = spawn(
    process.execPath,
    [
      BIN,
      'run',
      '--proxies',
      'squid-default,squid-bump',
      '--profiles',
      'flexxagent',
      '--runtime',
      runtime,
      '--lab-net',
      String(net),
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let out = '';
  child.stdout?.on('data', (d) => (out += d));
  child.stderr?.on('data', (d) => (out += d));
  t.teardown(async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const gone = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGKILL');
    await gone; // its lab is closed before the net is released
  });
  return { child, output: () => out };
}

/** Polls `probe` every 25 ms until it returns a non-empty list or the named deadline passes. */
async function until<T>(
  what: string,
  deadlineMs: number,
  child: ChildProcess,
  probe: () => T[],
): Promise<T[]> {
  const end = Date.now() + deadlineMs;
  for (;;) {
    const found = probe();
    if (found.length) return found;
    if (child.exitCode !== null) throw new Error(`${what}: proxycheck exited (${child.exitCode}) first`);
    if (Date.now() > end) throw new Error(`${what}: not within ${deadlineMs} ms`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

const confs = new Map<number, string>();

/** The squid.conf on a squid's command line (remembered, so it is known after the process is gone). */
function confOf(pid: number): string | undefined {
  try {
    const conf = readFileSync(`/proc/${pid}/cmdline`, 'utf8')
      .split('\0')
      .find((a) => a.endsWith('squid.conf'));
    if (conf) confs.set(pid, conf);
  } catch {
    // gone
  }
  return confs.get(pid);
}

/** Live squid processes whose command line names a file under `dir`. */
function squidsUsing(dir: string): number[] {
  return readdirSync('/proc')
    .filter((n) => /^\d+$/.test(n))
    .map(Number)
    .filter((pid) => {
      try {
        const args = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
        return /(^|\/)squid$/.test(args[0] ?? '') && args.some((a) => a.startsWith(dir)) && alive(pid);
      } catch {
        return false;
      }
    });
}

function exit(child: ChildProcess, deadlineMs: number): Promise<number | null> {
  return new Promise((resolve, reject) => {
    if (child.exitCode !== null) return resolve(child.exitCode);
    const timer = setTimeout(
      () => reject(new Error(`proxycheck did not exit within ${deadlineMs} ms of SIGINT`)),
      deadlineMs,
    );
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve(code);
    });
  });
}

/** Sends SIGINT to the run and proves it stops the way the CLI promises: exit 130, saying so. */
async function interrupt(t: Test, child: ChildProcess, output: () => string): Promise<void> {
  const t0 = Date.now();
  child.kill('SIGINT');
  const code = await exit(child, 30_000);
  t.comment(`exit ${code} ${Date.now() - t0} ms after SIGINT`);
  if (process.env.PROXYCHECK_TEST_DEBUG) t.comment(output());
  t.equal(code, 130, 'exit code 130 after SIGINT');
  t.match(output(), /SIGINT received, stopping everything we started/);
}

t.test(
  'container runtime',
  { ...requireComponent(t, 'a container engine', await containerEngineProblem()), timeout: 600_000 },
  async (t) => {
    const { child, output } = await startRun(t, 'container');
    const labels = { proxycheck: '1', 'proxycheck.pid': String(child.pid) };
    // running containers only (docker ps without -a): squid is up; allow for a first image build
    const up = await until('a ready squid container of that run', 540_000, child, () =>
      containersLabelled(labels, { running: true }).filter((id) => {
        const logs = spawnSync('docker', ['logs', id], { encoding: 'utf8' });
        return SQUID_READY.test(logs.stdout + logs.stderr);
      }),
    );
    t.ok(up.length > 0, `squid container up (${up.join(', ')})`);
    await interrupt(t, child, output);
    t.same(containersLabelled(labels), [], 'no container with our label remains (any state)');
  },
);

t.test(
  'process runtime',
  { ...requireComponent(t, 'squid', squidProblem()), timeout: 120_000 },
  async (t) => {
    const { child, output } = await startRun(t, 'process');
    // up: its pid file exists and its cache.log (both in the instance directory named on its
    // command line) has the readiness line
    const pids = await until('a ready squid process of that run', 60_000, child, () =>
      squidChildrenOf(child.pid ?? -1).filter((pid) => {
        try {
          const conf = confOf(pid);
          if (!conf) return false;
          const inst = dirname(dirname(conf));
          return (
            existsSync(join(inst, 'run', 'squid.pid')) &&
            SQUID_READY.test(readFileSync(join(inst, 'logs', 'cache.log'), 'utf8'))
          );
        } catch {
          return false;
        }
      }),
    );
    t.ok(pids.length > 0, `squid up (pid ${pids.join(', ')})`);
    await interrupt(t, child, output);
    t.same(pids.filter(alive), [], 'the squid processes are gone');
    t.same(squidChildrenOf(child.pid ?? -1), [], 'no squid child of that run remains');
    // orphans too: no squid anywhere whose command line points into that run's directory
    const runDir = dirname(dirname(dirname(confOf(pids[0] ?? -1) ?? '/x/x/x/x')));
    t.match(runDir, /proxycheck-/, `run directory ${runDir}`);
    t.same(squidsUsing(runDir), [], 'no squid process (orphaned or not) uses that run directory');
  },
);
