/**
 * A proxy as a plain child process: spawn with stdout and stderr piped and their tail kept for
 * evidence, a cleanup registered at once (a signal to us stops it too), readiness from a log line
 * with a named deadline, and a stop that asks politely and kills after a deadline.
 *
 * It dies with us, even when we are killed by SIGKILL and no cleanup runs: it is started as
 * `setpriv --pdeathsig KILL -- <cmd> <args>` (util-linux), so the kernel kills it the moment the
 * thread that forked it (Node's main thread) is gone. setpriv execs the command: the child's pid,
 * signals, stdout and stderr are the command's own. The kernel clears the parent-death signal
 * when a process changes its effective uid or gid, so a child that would drop privileges itself
 * (squid as root) is started as that user instead (`runAs`). Without setpriv it is spawned as
 * before and survives a SIGKILL of ours; then the next run's start (or `proxycheck clean`) sweeps
 * it with its run directory (harness/lab/rundir.ts, harness/cli/squid-commands.ts).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { accessSync, chownSync, constants, readdirSync, readFileSync, statSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { SetupError } from '../../errors.ts';
import { onCleanup, refuseIfStopping } from '../../lifecycle.ts';
import { waitForLine } from './ready.ts';

const STOP_DEADLINE_MS = 10_000;
const KEEP_BYTES = 64 * 1024;

/** uid/gid of a local user from /etc/passwd, or undefined. */
export function localUser(name: string): { uid: number; gid: number } | undefined {
  try {
    for (const line of readFileSync('/etc/passwd', 'utf8').split('\n')) {
      const f = line.split(':');
      if (f[0] === name && f[2] && f[3]) return { uid: Number(f[2]), gid: Number(f[3]) };
    }
  } catch {
    // no /etc/passwd
  }
  return undefined;
}

/** chown -R. */
export function chownTree(path: string, uid: number, gid: number): void {
  chownSync(path, uid, gid);
  if (statSync(path).isDirectory()) for (const e of readdirSync(path)) chownTree(join(path, e), uid, gid);
}

/** The last `lines` lines of `text`. */
export function tail(text: string, lines = 40): string {
  return text.split('\n').slice(-lines).join('\n');
}

/** The last lines of a file, or '' when it cannot be read. */
export function readTail(file: string): string {
  try {
    return tail(readFileSync(file, 'utf8'));
  } catch {
    return '';
  }
}

/** The absolute path of executable `cmd` (a path, or a name looked up in PATH), or undefined. */
export function which(cmd: string): string | undefined {
  const executable = (f: string) => {
    try {
      accessSync(f, constants.X_OK);
      return statSync(f).isFile();
    } catch {
      return false;
    }
  };
  if (cmd.includes('/')) return executable(cmd) ? cmd : undefined;
  for (const dir of (process.env.PATH ?? '/usr/bin:/bin').split(delimiter)) {
    if (dir && executable(join(dir, cmd))) return join(dir, cmd);
  }
  return undefined;
}

/**
 * setpriv (util-linux), or undefined when it is missing or PROXYCHECK_NO_SETPRIV is set (to try
 * the fallback).
 */
export function setprivBinary(): string | undefined {
  if (process.env.PROXYCHECK_NO_SETPRIV) return undefined;
  return which('setpriv');
}

/**
 * What to spawn for `cmd args`: through setpriv with a parent-death SIGKILL (and the user switch)
 * when setpriv is there and `cmd` can be run; as it is otherwise (a missing `cmd` then fails the
 * way it always did, with spawn's 'error').
 */
export function deathBound(
  cmd: string,
  args: string[],
  runAs?: { uid: number; gid: number },
): { file: string; argv: string[]; bound: boolean; uidGid?: { uid: number; gid: number } } {
  const setpriv = setprivBinary();
  if (!setpriv || !which(cmd))
    return { file: cmd, argv: args, bound: false, ...(runAs ? { uidGid: runAs } : {}) };
  const user = runAs ? ['--regid', String(runAs.gid), '--reuid', String(runAs.uid), '--clear-groups'] : [];
  return { file: setpriv, argv: [...user, '--pdeathsig', 'KILL', '--', cmd, ...args], bound: true };
}

function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

export interface ProcessSpec {
  /** Names the process in messages, e.g. `squid-default (process)`. */
  what: string;
  cmd: string;
  args: string[];
  /** The name of its cleanup (shown when a signal stops the run), given the pid. */
  cleanupName(pid: number | undefined): string;
  /** What asks it to stop quickly (default SIGTERM; squid: SIGINT, its fast shutdown). */
  stopSignal?: NodeJS.Signals;
  /** How long it gets to exit after `stopSignal` before SIGKILL. */
  stopDeadlineMs?: number;
  /**
   * Runs it as this user from its start (setpriv --reuid/--regid --clear-groups; spawn's uid/gid
   * without setpriv), for a command that would otherwise switch to it itself and so lose its
   * parent-death signal.
   */
  runAs?: { uid: number; gid: number };
  /** Its environment (default ours), e.g. KRB5_CONFIG for a Kerberos KDC or squid's Kerberos helper. */
  env?: NodeJS.ProcessEnv;
}

export interface ReadyWait {
  /** What is awaited, after the process's name in the DeadlineError, e.g. `readiness ("Accepting ...")`. */
  awaiting: string;
  deadlineMs: number;
  /** Why it exited, read when it exits before it is ready (e.g. its first FATAL line). */
  problem(): string;
}

export interface LaunchedProcess {
  readonly child: ChildProcess;
  /** `cmd args...` on one line, for evidence (without the setpriv in front). */
  readonly command: string;
  /** True when it dies with us (started through setpriv --pdeathsig KILL). */
  readonly deathBound: boolean;
  /** The kept tail (64 KiB) of its stdout and stderr, as they arrived. */
  output(): string;
  /**
   * Resolves when a stderr line matches `pattern`. Rejects with a DeadlineError naming the wait,
   * or a SetupError when the process exits first (`<what> exited (code N) before it was ready:
   * <problem>`) or cannot be run.
   */
  ready(pattern: RegExp, wait: ReadyWait): Promise<void>;
  /** Stops it (stop signal, SIGKILL after the deadline) and drops its cleanup; idempotent. */
  stop(): Promise<void>;
}

/** Spawns `cmd`; call only when nothing is awaited between the checks before it and its use. */
export function launchProcess(spec: ProcessSpec): LaunchedProcess {
  const { what, cmd, args } = spec;
  refuseIfStopping(what); // no await from here to onCleanup(): a signal cannot slip in between
  const how = deathBound(cmd, args, spec.runAs);
  const child = spawn(how.file, how.argv, {
    stdio: ['ignore', 'pipe', 'pipe'],
    ...how.uidGid,
    ...(spec.env ? { env: spec.env } : {}),
  });
  let output = '';
  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill(spec.stopSignal ?? 'SIGTERM');
        const deadlineMs = spec.stopDeadlineMs ?? STOP_DEADLINE_MS;
        let timer: NodeJS.Timeout | undefined;
        const killed = await Promise.race([
          exited(child).then(() => false),
          new Promise<boolean>((resolve) => {
            timer = setTimeout(() => resolve(true), deadlineMs);
          }),
        ]);
        clearTimeout(timer);
        if (killed) {
          child.kill('SIGKILL');
          await exited(child);
        }
      }
      unregister();
      if (process.env.PROXYCHECK_DEBUG) process.stderr.write(`--- ${what} output ---\n${output}\n`);
    })();
    return stopping;
  };
  const unregister = onCleanup(spec.cleanupName(child.pid), stop);

  const collect = (d: Buffer) => {
    output += d.toString();
    if (output.length > KEEP_BYTES) output = output.slice(-KEEP_BYTES);
  };
  child.stdout?.on('data', collect);
  child.stderr?.on('data', collect);

  const ready = async (pattern: RegExp, wait: ReadyWait): Promise<void> => {
    const gone = new AbortController();
    const onExit = () => {
      const problem = wait.problem();
      const code = child.exitCode ?? child.signalCode;
      gone.abort(new SetupError(`${what} exited (code ${code}) before it was ready: ${problem}`));
    };
    const onError = (err: Error) => {
      gone.abort(new SetupError(`${what}: cannot run ${cmd}: ${err.message}`));
    };
    child.once('exit', onExit);
    child.once('error', onError);
    if (child.exitCode !== null || child.signalCode !== null) onExit();
    try {
      if (!child.stderr) throw new SetupError(`${what}: no stderr to read`);
      await waitForLine(child.stderr, pattern, {
        what: `${what} ${wait.awaiting}`,
        deadlineMs: wait.deadlineMs,
        signal: gone.signal,
      });
    } finally {
      child.off('exit', onExit);
      child.off('error', onError);
    }
  };

  return {
    child,
    command: [cmd, ...args].join(' '),
    deathBound: how.bound,
    output: () => output,
    ready,
    stop,
  };
}
