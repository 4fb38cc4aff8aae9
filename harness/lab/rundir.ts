/**
 * Run directories: one private directory (mode 0700) per run for keys, configs and logs, removed
 * by `remove()` when the run ends. A run killed by SIGKILL cannot remove its own, so the name says
 * whose it is and the next start sweeps it:
 *
 *   <tmp>/<prefix>pid<owner pid>.<owner start>.<6 random characters>
 *
 * e.g. `/tmp/proxycheck-pid4242.1234567.aB3dE9`. `<owner start>` is the owner's start time
 * (field 22 of /proc/<pid>/stat, clock ticks since boot; 0 where there is no /proc), so a pid
 * reused by another process does not keep a dead run's directory alive. The owner is part of the
 * name, not a file inside, so a directory is never seen without it. A run is dead when no process
 * has that pid, or the one that has it started at another time (or is a zombie).
 *
 * Every RunDir created sweeps the dead runs' directories first: any process still using one (a
 * squid started where setpriv was missing, its helpers) is killed (SIGKILL: its run is gone), then
 * the directory is removed. Directories without an owner in their name (made by other code, or by
 * an older proxycheck) and live runs' directories are never touched.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Every run directory's name starts with this (prefixes given to RunDir must too). */
export const RUN_DIR_PREFIX = 'proxycheck-';

const OWNER = /^proxycheck-.*?pid(\d+)\.(\d+)\.[A-Za-z0-9]{6}$/;

export interface RunOwner {
  pid: number;
  /** Start time in clock ticks since boot, '0' when unknown. */
  start: string;
}

/** `/proc/<pid>/stat`'s state and start time, or undefined when there is no such process. */
function procStat(pid: number): { state: string; start: string } | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // the command name (field 2) may hold spaces and parentheses: count from the last ')'
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return { state: f[0] ?? '?', start: f[19] ?? '0' };
  } catch {
    return undefined;
  }
}

function hasProc(): boolean {
  try {
    readFileSync('/proc/self/stat');
    return true;
  } catch {
    return false;
  }
}

/** This process as an owner. */
export function selfOwner(): RunOwner {
  return { pid: process.pid, start: procStat(process.pid)?.start ?? '0' };
}

/** The owner named by a run directory's name (its basename), or undefined. */
export function ownerOf(name: string): RunOwner | undefined {
  const m = OWNER.exec(name);
  return m ? { pid: Number(m[1]), start: m[2] as string } : undefined;
}

/** True while the owner process runs (same pid, same start time, not a zombie). */
export function ownerAlive(owner: RunOwner): boolean {
  if (owner.pid === process.pid) return true;
  if (hasProc()) {
    const s = procStat(owner.pid);
    if (!s || s.state === 'Z' || s.state === 'X') return false;
    return owner.start === '0' || s.start === owner.start;
  }
  try {
    process.kill(owner.pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Pids of live processes with an argument naming `dir` or a path under it (Linux; [] elsewhere). */
export function processesUsing(dir: string): number[] {
  let names: string[];
  try {
    names = readdirSync('/proc');
  } catch {
    return [];
  }
  const out: number[] = [];
  for (const name of names) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
    try {
      const args = readFileSync(`/proc/${name}/cmdline`, 'utf8').split('\0');
      if (args.some((a) => a === dir || a.startsWith(`${dir}/`))) out.push(Number(name));
    } catch {
      // gone
    }
  }
  return out;
}

export interface Swept {
  /** Run directories removed. */
  dirs: string[];
  /** Processes killed because they still used one. */
  pids: number[];
}

/** Kills what still uses a dead run's directory and removes it; live runs' are left alone. */
export function sweepDeadRunDirs(tmp = tmpdir()): Swept {
  const swept: Swept = { dirs: [], pids: [] };
  let names: string[];
  try {
    names = readdirSync(tmp);
  } catch {
    return swept;
  }
  for (const name of names) {
    const owner = ownerOf(name);
    if (!owner || ownerAlive(owner)) continue;
    const dir = join(tmp, name);
    for (const pid of processesUsing(dir)) {
      try {
        process.kill(pid, 'SIGKILL');
        swept.pids.push(pid);
      } catch {
        // gone, or not ours to kill
      }
    }
    try {
      rmSync(dir, { recursive: true, force: true, maxRetries: 2 });
      swept.dirs.push(dir);
    } catch {
      // another sweep got there first, or it is not ours to remove
    }
  }
  return swept;
}

/** A private per-run directory (mode 0700) named after its owner; removed by `remove()`. */
export class RunDir {
  readonly path: string;
  constructor(prefix = RUN_DIR_PREFIX) {
    if (!prefix.startsWith(RUN_DIR_PREFIX))
      throw new Error(`a run directory's prefix starts with "${RUN_DIR_PREFIX}", not "${prefix}"`);
    sweepDeadRunDirs();
    const { pid, start } = selfOwner();
    this.path = mkdtempSync(join(tmpdir(), `${prefix}pid${pid}.${start}.`));
  }
  file(name: string): string {
    return join(this.path, name);
  }
  remove(): void {
    rmSync(this.path, { recursive: true, force: true });
  }
}
