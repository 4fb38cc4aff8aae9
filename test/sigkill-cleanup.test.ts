/**
 * SIGKILL of a running `proxycheck run` (no cleanup of ours can run) leaves nothing behind:
 *  - process runtime: its squid dies with it (setpriv --pdeathsig KILL), and `proxycheck clean`
 *    removes its run directory (keys included); without setpriv (PROXYCHECK_NO_SETPRIV=1) the
 *    squid survives the kill and `clean` stops it;
 *  - container runtime: `clean` removes its container and its run directory;
 *  - a live run's directory survives `clean` (other proxychecks run in parallel).
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t, { type Test } from 'tap';
import { ownerOf, RunDir } from '../harness/lab/rundir.ts';
import { SQUID_READY } from '../harness/proxies/squid/config.ts';
import { setprivBinary } from '../harness/proxies/toolkit/process.ts';
import { labNet } from './helpers/lab-net.ts';
import { containerEngineProblem, requireComponent, squidProblem } from './helpers/requirements.ts';
import { alive, containersLabelled, squidChildrenOf } from './helpers/squid-fleet.ts';

const BIN = fileURLToPath(new URL('../bin/proxycheck.js', import.meta.url));
const SQUID_DEATH_DEADLINE_MS = 2_000;

/**
 * A temporary directory of the test's own, as TMPDIR of the run and of `clean`: a RunDir made by a
 * parallel test sweeps only its own TMPDIR, so it cannot take the dead run's leftovers first.
 * (Its name has no owner, so no sweep removes it.)
 */
function privateTmp(t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'proxycheck-sigkill-'));
  chmodSync(dir, 0o711); // squid's user (proxy) traverses it, as it does /tmp
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** `proxycheck run` of squid-default on a lab net of its own; killed, if still running, when `t` ends. */
async function startRun(t: Test, runtime: string, env: NodeJS.ProcessEnv = {}): Promise<ChildProcess> {
  const net = await labNet(t);
  const child = spawn(
    process.execPath,
    [
      BIN,
      'run',
      '--proxies',
      'squid-default',
      '--runtime',
      runtime,
      '--profiles',
      'vpro-cira',
      '--lab-net',
      String(net),
    ],
    { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, ...env } },
  );
  child.stderr?.resume();
  t.teardown(async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const gone = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGKILL');
    await gone;
  });
  return child;
}

/** Polls `probe` every 25 ms until it returns a value or the named deadline passes. */
async function until<T>(
  what: string,
  deadlineMs: number,
  probe: () => T | undefined,
  child?: ChildProcess,
): Promise<T> {
  const end = Date.now() + deadlineMs;
  for (;;) {
    const found = probe();
    if (found !== undefined) return found;
    if (child && child.exitCode !== null)
      throw new Error(`${what}: proxycheck exited (${child.exitCode}) first`);
    if (Date.now() > end) throw new Error(`${what}: not within ${deadlineMs} ms`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** The ready squid child of `child` and its run directory, within 60 s. */
async function readySquid(child: ChildProcess): Promise<{ pid: number; runDir: string }> {
  return until(
    'a ready squid process of that run',
    60_000,
    () => {
      for (const pid of squidChildrenOf(child.pid ?? -1)) {
        try {
          const conf = readFileSync(`/proc/${pid}/cmdline`, 'utf8')
            .split('\0')
            .find((a) => a.endsWith('squid.conf'));
          if (!conf) continue;
          const inst = dirname(dirname(conf));
          if (SQUID_READY.test(readFileSync(join(inst, 'logs', 'cache.log'), 'utf8')))
            return { pid, runDir: dirname(inst) };
        } catch {
          // not yet
        }
      }
      return undefined;
    },
    child,
  );
}

/** Live squid processes whose command line names a file under `dir`. */
function squidsUsing(dir: string): number[] {
  return readdirSync('/proc')
    .filter((n) => /^\d+$/.test(n))
    .map(Number)
    .filter((pid) => {
      try {
        const args = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
        return /(^|\/)squid$/.test(args[0] ?? '') && args.some((a) => a.startsWith(`${dir}/`)) && alive(pid);
      } catch {
        return false;
      }
    });
}

function killed(child: ChildProcess): Promise<void> {
  const gone = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGKILL');
  return gone;
}

function clean(t: Test, tmp: string): string {
  const r = spawnSync(process.execPath, [BIN, 'clean'], {
    encoding: 'utf8',
    timeout: 120_000,
    env: { ...process.env, TMPDIR: tmp },
  });
  t.equal(r.status, 0, `proxycheck clean exits 0 ${r.stderr}`);
  t.comment(r.stdout.trim().replace(/\n/g, '; '));
  return r.stdout;
}

t.test(
  'process runtime: squid dies with a SIGKILLed run, clean removes its directory, not a live one',
  { ...requireComponent(t, 'squid', squidProblem()), timeout: 120_000 },
  async (t) => {
    t.ok(setprivBinary(), 'setpriv (util-linux) is installed');
    const tmp = privateTmp(t);
    const saved = process.env.TMPDIR;
    process.env.TMPDIR = tmp;
    const live = new RunDir('proxycheck-test-'); // ours: its owner (this process) is alive
    if (saved === undefined) delete process.env.TMPDIR;
    else process.env.TMPDIR = saved;
    t.teardown(() => live.remove());
    const child = await startRun(t, 'process', { TMPDIR: tmp });
    const { pid, runDir } = await readySquid(child);
    t.equal(ownerOf(basename(runDir))?.pid, child.pid, `run directory ${runDir} names its owner`);

    const t0 = performance.now();
    await killed(child);
    await until(`squid ${pid} dead after SIGKILL of its proxycheck`, SQUID_DEATH_DEADLINE_MS, () =>
      alive(pid) ? undefined : true,
    );
    t.comment(`squid ${pid} dead ${(performance.now() - t0).toFixed(1)} ms after SIGKILL of proxycheck`);
    t.same(squidsUsing(runDir), [], 'no squid process uses that run directory');
    t.ok(existsSync(runDir), 'its run directory is left (the run could not remove it)');
    t.match(clean(t, tmp), /run directories: removed 1\n/);
    t.notOk(existsSync(runDir), 'clean removed the dead run directory');
    t.ok(existsSync(live.path), `a live run's directory (${live.path}) is left alone`);
  },
);

t.test(
  'process runtime without setpriv: the squid outlives the SIGKILL; clean stops it and removes the directory',
  { ...requireComponent(t, 'squid', squidProblem()), timeout: 120_000 },
  async (t) => {
    const tmp = privateTmp(t);
    const child = await startRun(t, 'process', { PROXYCHECK_NO_SETPRIV: '1', TMPDIR: tmp });
    const { pid, runDir } = await readySquid(child);
    await killed(child);
    await new Promise((r) => setTimeout(r, 300));
    t.ok(alive(pid), `without setpriv squid ${pid} survives (the fallback is the sweep)`);
    t.match(
      clean(t, tmp),
      new RegExp(`squid processes: stopped 1 \\(${pid}\\)\n(.|\n)*run directories: removed 1\n`),
    );
    await until(`squid ${pid} dead after clean`, 5_000, () => (alive(pid) ? undefined : true));
    t.same(squidsUsing(runDir), [], 'no squid process uses that run directory');
    t.notOk(existsSync(runDir), 'clean removed the dead run directory');
  },
);

t.test(
  'container runtime: clean removes the container and run directory of a SIGKILLed run',
  { ...requireComponent(t, 'a container engine', await containerEngineProblem()), timeout: 600_000 },
  async (t) => {
    const tmp = privateTmp(t);
    const child = await startRun(t, 'container', { TMPDIR: tmp });
    const labels = { proxycheck: '1', 'proxycheck.pid': String(child.pid) };
    // running and ready; allow for a first image build
    const ids = await until(
      'a ready squid container of that run',
      540_000,
      () => {
        const up = containersLabelled(labels, { running: true }).filter((id) => {
          const logs = spawnSync('docker', ['logs', id], { encoding: 'utf8' });
          return SQUID_READY.test(logs.stdout + logs.stderr);
        });
        return up.length ? up : undefined;
      },
      child,
    );
    const runId = spawnSync(
      'docker',
      ['inspect', '-f', '{{index .Config.Labels "proxycheck.run"}}', ids[0] ?? ''],
      {
        encoding: 'utf8',
      },
    ).stdout.trim();
    const runDir = join(tmp, runId);
    t.ok(existsSync(runDir), `run directory ${runDir}`);
    await killed(child);
    t.ok(containersLabelled(labels).length > 0, 'the container outlives the SIGKILL (no reaper here)');
    // (a parallel test's first container start sweeps dead runs' containers too)
    t.match(clean(t, tmp), /containers: removed \d+\n(.|\n)*run directories: removed 1\n/);
    t.same(containersLabelled(labels), [], 'no container of that run remains (any state)');
    t.notOk(existsSync(runDir), 'clean removed the dead run directory');
  },
);
