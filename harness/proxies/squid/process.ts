/**
 * squid as a plain process: `/usr/sbin/squid -N -d1 -f <private conf>` with its own pid file, logs,
 * coredump dir and certificate db inside the run directory. `-d1` copies cache.log's level-1
 * lines (start-up, the readiness line, FATALs) to stderr, which we watch and keep for evidence.
 *
 * As root, squid drops to user `proxy` before it opens its logs and runs its helpers as `proxy`:
 * the run directory gets search permission for others (0711; its keys stay 0600), and the log, run and certdb
 * directories belong to `proxy`. The signing key is read by squid while still root.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { DeadlineError, SetupError } from '../../errors.ts';
import { onCleanup, refuseIfStopping } from '../../lifecycle.ts';
import { SQUID_READY, SQUID_VERSION_LINE } from './config.ts';
import { runCommand } from './image.ts';
import { squidBinary } from './runtime.ts';
import type { SquidLaunch, SquidRunning } from './squid.ts';

export const SQUID_HELPER_DIR = process.env.PROXYCHECK_SQUID_HELPERS ?? '/usr/lib/squid';
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

function chownTree(path: string, uid: number, gid: number): void {
  chownSync(path, uid, gid);
  if (statSync(path).isDirectory()) for (const e of readdirSync(path)) chownTree(join(path, e), uid, gid);
}

function tail(text: string, lines = 40): string {
  return text.split('\n').slice(-lines).join('\n');
}

function readTail(file: string): string {
  try {
    return tail(readFileSync(file, 'utf8'));
  } catch {
    return '';
  }
}

function firstProblem(text: string): string | undefined {
  return text
    .split('\n')
    .find((l) => /FATAL|ERROR|unrecognized|Bungled/.test(l))
    ?.replace(/^\d{4}\/\d\d\/\d\d \d\d:\d\d:\d\d\|\s*/, '')
    .trim();
}

function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

export async function startSquidProcess(l: SquidLaunch): Promise<SquidRunning> {
  const what = `${l.id} (process)`;
  const bin = squidBinary();
  if (!bin) {
    throw new SetupError(
      `${what}: squid is not installed (no /usr/sbin/squid; apt-get install squid-openssl, or set PROXYCHECK_SQUID)`,
    );
  }
  const runPath = join(l.dir, 'run');
  const logPath = join(l.dir, 'logs');
  mkdirSync(runPath, { recursive: true, mode: 0o755 });
  mkdirSync(logPath, { recursive: true, mode: 0o755 });
  const bumping = l.flavour === 'bump' || l.flavour === 'splice';
  const sslDb = join(l.dir, 'ssl_db');
  if (bumping) {
    // security_file_certgen -c refuses an existing directory: it creates it
    const r = await runCommand(
      join(SQUID_HELPER_DIR, 'security_file_certgen'),
      ['-c', '-s', sslDb, '-M', '4MB'],
      {
        what: `${what}: certificate db init`,
        timeoutMs: 15_000,
      },
    );
    if (r.code !== 0) {
      throw new SetupError(`${what}: security_file_certgen -c failed (exit ${r.code})`, {
        stderr: r.stderr + r.stdout,
      });
    }
  }
  if (process.getuid?.() === 0) {
    const proxy = localUser('proxy');
    if (!proxy)
      throw new SetupError(`${what}: squid runs as root and drops to user "proxy", which does not exist`);
    // squid's user must traverse the run directory (mkdtemp'd 0700); only search bits are added
    const runDirMode = statSync(l.runDirPath).mode & 0o7777;
    chmodSync(l.runDirPath, runDirMode | 0o011);
    for (const d of [runPath, logPath, ...(bumping ? [sslDb] : [])]) chownTree(d, proxy.uid, proxy.gid);
  }
  const cacheLog = join(logPath, 'cache.log');
  const config = l.writeConfig(
    {
      pidFile: join(runPath, 'squid.pid'),
      cacheLog,
      accessLog: `stdio:${join(logPath, 'access.log')}`,
      coredumpDir: runPath,
      helperDir: SQUID_HELPER_DIR,
      ...(bumping ? { sslDb } : {}),
    },
    l.etcDir,
  );
  const confFile = join(l.etcDir, 'squid.conf');
  const args = ['-N', '-d1', '-f', confFile];

  refuseIfStopping(what); // no await from here to onCleanup(): a signal cannot slip in between
  const child = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      if (child.exitCode === null && child.signalCode === null) {
        // SIGINT: squid's fast shutdown (does not wait shutdown_lifetime for clients)
        child.kill('SIGINT');
        let timer: NodeJS.Timeout | undefined;
        const killed = await Promise.race([
          exited(child).then(() => false),
          new Promise<boolean>((resolve) => {
            timer = setTimeout(() => resolve(true), STOP_DEADLINE_MS);
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
  const unregister = onCleanup(`squid ${l.id} (pid ${child.pid})`, stop);

  let output = '';
  const collect = (d: Buffer) => {
    output += d.toString();
    if (output.length > KEEP_BYTES) output = output.slice(-KEEP_BYTES);
  };
  child.stdout?.on('data', collect);
  child.stderr?.on('data', collect);

  const evidence = () => ({
    command: [bin, ...args].join(' '),
    exitCode: child.exitCode,
    signal: child.signalCode,
    stderr: tail(output),
    cacheLog: existsSync(cacheLog) ? readTail(cacheLog) : '',
    config,
  });

  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(
          new DeadlineError(`${what} readiness ("Accepting ... HTTP Socket connections")`, l.readyTimeoutMs),
        );
      }, l.readyTimeoutMs);
      const onData = () => {
        if (SQUID_READY.test(output)) {
          done();
          resolve();
        }
      };
      const onExit = () => {
        done();
        const problem = firstProblem(output) ?? firstProblem(readTail(cacheLog)) ?? 'no FATAL line';
        reject(
          new SetupError(
            `${what} exited (code ${child.exitCode ?? child.signalCode}) before it was ready: ${problem}`,
          ),
        );
      };
      const onError = (err: Error) => {
        done();
        reject(new SetupError(`${what}: cannot run ${bin}: ${err.message}`));
      };
      const done = () => {
        clearTimeout(timer);
        child.stderr?.off('data', onData);
        child.off('exit', onExit);
        child.off('error', onError);
      };
      child.stderr?.on('data', onData);
      child.once('exit', onExit);
      child.once('error', onError);
    });
  } catch (err) {
    await stop();
    const e = err as Error;
    throw new SetupError(e.message, evidence(), { cause: err });
  }
  const version = SQUID_VERSION_LINE.exec(output)?.[1];
  return { runtime: 'process', version: `squid ${version ?? 'unknown'}`, stop };
}
