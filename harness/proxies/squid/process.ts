/**
 * squid as a plain process: `/usr/sbin/squid -N -d1 -f <private conf>` with its own pid file, logs,
 * coredump dir and certificate db inside the run directory. `-d1` copies cache.log's level-1
 * lines (start-up, the readiness line, FATALs) to stderr, which we watch and keep for evidence.
 * Launching, watching and stopping the process is the toolkit's (../toolkit/process.ts).
 *
 * As root, squid runs as user `proxy` from its start (the toolkit's `runAs`: squid dropping to
 * `proxy` itself would clear the parent-death signal that makes it die with us): the run directory
 * gets search permission for others (0711; its keys stay 0600), and the log, run and certdb
 * directories and the signing key (0600) belong to `proxy`.
 */
import { chmodSync, chownSync, existsSync, mkdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { SetupError } from '../../errors.ts';
import { runCommand } from '../toolkit/command.ts';
import { chownTree, launchProcess, localUser, readTail, tail } from '../toolkit/process.ts';
import { policyBumps, SQUID_READY, SQUID_VERSION_LINE } from './config.ts';
import { squidBinary } from './runtime.ts';
import type { SquidLaunch, SquidRunning } from './squid.ts';

export const SQUID_HELPER_DIR = process.env.PROXYCHECK_SQUID_HELPERS ?? '/usr/lib/squid';
const STOP_DEADLINE_MS = 10_000;

function firstProblem(text: string): string | undefined {
  return text
    .split('\n')
    .find((l) => /FATAL|ERROR|unrecognized|Bungled/.test(l))
    ?.replace(/^\d{4}\/\d\d\/\d\d \d\d:\d\d:\d\d\|\s*/, '')
    .trim();
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
  const bumping = policyBumps(l.policy);
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
  let runAs: { uid: number; gid: number } | undefined;
  if (process.getuid?.() === 0) {
    const proxy = localUser('proxy');
    if (!proxy)
      throw new SetupError(`${what}: squid runs as root and drops to user "proxy", which does not exist`);
    // squid's user must traverse the run directory (mkdtemp'd 0700); only search bits are added
    const runDirMode = statSync(l.runDirPath).mode & 0o7777;
    chmodSync(l.runDirPath, runDirMode | 0o011);
    for (const d of [runPath, logPath, ...(bumping ? [sslDb] : [])]) chownTree(d, proxy.uid, proxy.gid);
    const key = join(l.etcDir, 'signing-ca.key');
    if (bumping && existsSync(key)) chownSync(key, proxy.uid, proxy.gid);
    // an HTTPS proxy's own key (0600), read by squid as proxy
    const proxyKey = join(l.etcDir, 'proxy.key');
    if (l.policy.tls && existsSync(proxyKey)) chownSync(proxyKey, proxy.uid, proxy.gid);
    runAs = proxy;
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

  const squid = launchProcess({
    what,
    cmd: bin,
    args: ['-N', '-d1', '-f', confFile],
    cleanupName: (pid) => `squid ${l.id} (pid ${pid})`,
    // SIGINT: squid's fast shutdown (does not wait shutdown_lifetime for clients)
    stopSignal: 'SIGINT',
    stopDeadlineMs: STOP_DEADLINE_MS,
    ...(runAs ? { runAs } : {}),
  });
  const evidence = () => ({
    command: squid.command,
    exitCode: squid.child.exitCode,
    signal: squid.child.signalCode,
    stderr: tail(squid.output()),
    cacheLog: existsSync(cacheLog) ? readTail(cacheLog) : '',
    config,
  });

  try {
    await squid.ready(SQUID_READY, {
      awaiting: 'readiness ("Accepting ... HTTP Socket connections")',
      deadlineMs: l.readyTimeoutMs,
      problem: () => firstProblem(squid.output()) ?? firstProblem(readTail(cacheLog)) ?? 'no FATAL line',
    });
  } catch (err) {
    await squid.stop();
    const e = err as Error;
    throw new SetupError(e.message, evidence(), { cause: err });
  }
  const version = SQUID_VERSION_LINE.exec(squid.output())?.[1];
  return { runtime: 'process', version: `squid ${version ?? 'unknown'}`, stop: squid.stop };
}
