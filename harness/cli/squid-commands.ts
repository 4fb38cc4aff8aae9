/**
 * `proxycheck images build` and `proxycheck clean`.
 *
 *  - images build: builds containers/squid/Dockerfile as `proxycheck/squid:<hash of the build
 *    context>` unless that tag exists (idempotent); without a registry, on the debootstrap base.
 *  - clean: removes what dead runs left (a run killed by SIGKILL cleans nothing up): their
 *    containers (labelled `proxycheck=1` and with an owner pid that is gone, on this host), their
 *    squid processes (from the pid files in their run directories) and their run directories
 *    (`<tmp>/proxycheck-*pid<owner>.*`, harness/lab/rundir.ts). A live run's are never touched:
 *    other proxychecks may be running. `clean --all` also removes every container labelled
 *    `proxycheck=1` and stops every squid of our pid files, live runs' included (their run
 *    directories stay: their runs remove them).
 */
import { readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Command } from 'commander';
import { errorMessage } from '../errors.ts';
import { ownerAlive, ownerOf, sweepDeadRunDirs } from '../lab/rundir.ts';
import { buildSquidImage, squidImageTag } from '../proxies/squid/image.ts';
import { OUR_LABEL, removeContainersLabelled, sweepDeadContainers } from '../proxies/toolkit/container.ts';
import { engineProblem } from '../proxies/toolkit/runtime.ts';

export interface SquidPidFile {
  file: string;
  pid: number;
}

/** Pid files of squids we started: `<tmp>/proxycheck-*` / `squid-*` / run / squid.pid. */
export function ourSquidPidFiles(tmp = tmpdir()): SquidPidFile[] {
  const out: SquidPidFile[] = [];
  const ls = (dir: string) => {
    try {
      return readdirSync(dir);
    } catch {
      return [];
    }
  };
  for (const run of ls(tmp).filter((n) => n.startsWith('proxycheck-'))) {
    for (const inst of ls(join(tmp, run)).filter((n) => n.startsWith('squid-'))) {
      const file = join(tmp, run, inst, 'run', 'squid.pid');
      try {
        const pid = Number(readFileSync(file, 'utf8').trim());
        if (Number.isInteger(pid) && pid > 1) out.push({ file, pid });
      } catch {
        // no pid file: not running (squid removes it on exit)
      }
    }
  }
  return out;
}

/** True when `pid` is a live squid whose command line names a config under `dir`. */
export function isOurSquid(pid: number, dir: string): boolean {
  try {
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    return /(^|\/)squid$/.test(cmdline[0] ?? '') && cmdline.some((a) => a.startsWith(dir));
  } catch {
    return false;
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** True when `file` lies in the run directory of a run whose owner is gone. */
function ofDeadRun(file: string, tmp = tmpdir()): boolean {
  const run = file.slice(tmp.length + 1).split('/')[0] ?? '';
  const owner = ownerOf(run);
  return owner !== undefined && !ownerAlive(owner);
}

/**
 * Stops the squid processes of our pid files, of dead runs only unless `all`; returns their pids.
 */
export async function stopOurSquids(deadlineMs = 10_000, opts: { all?: boolean } = {}): Promise<number[]> {
  const stopped: number[] = [];
  for (const { file, pid } of ourSquidPidFiles()) {
    if (!opts.all && !ofDeadRun(file)) continue;
    const instDir = join(file, '..', '..');
    if (!isOurSquid(pid, instDir)) continue;
    process.kill(pid, 'SIGINT');
    const until = Date.now() + deadlineMs;
    while (alive(pid) && Date.now() < until) await new Promise((r) => setTimeout(r, 100));
    if (alive(pid)) process.kill(pid, 'SIGKILL');
    stopped.push(pid);
  }
  return stopped;
}

export function registerSquidCommands(program: Command): void {
  const images = program.command('images').description('container images proxycheck runs (squid)');
  images
    .command('build')
    .description('build the squid image unless the current one exists (tag = hash of containers/squid)')
    .option('--force', 'rebuild even if the image exists')
    .action(async (o) => {
      const r = await buildSquidImage({ force: Boolean(o.force) });
      process.stdout.write(
        r.built
          ? `built ${r.image} on ${r.base} in ${(r.ms / 1000).toFixed(1)} s\n`
          : `${r.image} is up to date\n`,
      );
    });
  images
    .command('tag')
    .description('print the tag of the current squid image')
    .action(() => {
      process.stdout.write(`${squidImageTag()}\n`);
    });

  program
    .command('clean')
    .description('remove what dead runs left behind: their containers, squid processes and run directories')
    .option(
      '--all',
      `also remove every container labelled ${OUR_LABEL}=1 and stop every squid of ours, live runs' too`,
    )
    .action(async (o) => {
      const all = Boolean(o.all);
      const engine = await engineProblem();
      if (engine) {
        process.stdout.write(`containers: skipped (${engine})\n`);
      } else {
        try {
          const n = all
            ? await removeContainersLabelled({ [OUR_LABEL]: '1' })
            : (await sweepDeadContainers()).length;
          process.stdout.write(`containers: removed ${n}\n`);
        } catch (err) {
          process.stdout.write(`containers: ${errorMessage(err)}\n`);
        }
      }
      const pids = await stopOurSquids(10_000, { all });
      // what is left in dead runs' directories (helpers, a squid without a pid file) is killed
      const swept = sweepDeadRunDirs();
      const stopped = [...new Set([...pids, ...swept.pids])];
      process.stdout.write(
        `squid processes: stopped ${stopped.length}${stopped.length ? ` (${stopped.join(', ')})` : ''}\n`,
      );
      process.stdout.write(`run directories: removed ${swept.dirs.length}\n`);
    });
}
