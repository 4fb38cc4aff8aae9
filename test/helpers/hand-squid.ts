/**
 * A squid configured by hand, as a customer runs one: our own squid.conf lines (not the adapters'
 * generator), `/usr/sbin/squid -N` started directly, lab hosts in a hosts_file. Stopped in teardown.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { chmodSync, chownSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Test } from 'tap';
import { pickPort } from '../../harness/proxies/toolkit/ports.ts';
import { localUser } from '../../harness/proxies/toolkit/process.ts';
import { waitForListening } from '../../harness/proxies/toolkit/ready.ts';

const READY_MS = 20_000;
const STOP_MS = 10_000;

export interface HandSquid {
  url: string;
  port: number;
  dir: string;
  conf: string;
  child: ChildProcess;
}

export function baseConf(dir: string, port: number, policy: string[]): string {
  return [
    `http_port 127.0.0.1:${port}`,
    `pid_filename ${dir}/run/squid.pid`,
    `cache_log ${dir}/logs/cache.log`,
    `access_log stdio:${dir}/logs/access.log`,
    `coredump_dir ${dir}/run`,
    'cache deny all',
    'pinger_enable off',
    'visible_hostname validate-squid-test',
    'shutdown_lifetime 1 seconds',
    `hosts_file ${dir}/hosts`,
    'dns_nameservers 127.0.0.1',
    'dns_timeout 3 seconds',
    ...policy,
  ].join('\n');
}

export const STOCK_POLICY = [
  'acl SSL_ports port 443',
  'acl Safe_ports port 80 443 1025-65535',
  'http_access deny !Safe_ports',
  'http_access deny CONNECT !SSL_ports',
];

/**
 * Writes squid.conf (from `make(dir, port)`) and a hosts file for lab net `net`, and starts
 * squid -N on them; always killed in teardown.
 */
export async function startSquid(
  t: Test,
  hosts: string,
  make: (dir: string, port: number) => string,
): Promise<HandSquid> {
  const dir = mkdtempSync(join(tmpdir(), 'proxycheck-test-handsquid-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  chmodSync(dir, 0o755);
  for (const d of ['run', 'logs']) mkdirSync(join(dir, d));
  const proxyUser = process.getuid?.() === 0 ? localUser('proxy') : undefined;
  if (proxyUser) for (const d of ['run', 'logs']) chownSync(join(dir, d), proxyUser.uid, proxyUser.gid);
  writeFileSync(join(dir, 'hosts'), hosts);
  const port = await pickPort();
  const conf = make(dir, port) + '\n';
  writeFileSync(join(dir, 'squid.conf'), conf);
  const child = spawn('/usr/sbin/squid', ['-N', '-d1', '-f', join(dir, 'squid.conf')], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  t.teardown(() => stopSquid(child));
  let output = '';
  child.stdout?.on('data', (d) => (output += d));
  child.stderr?.on('data', (d) => (output += d));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(
      () =>
        reject(
          new Error(`hand-configured squid: no "Accepting HTTP Socket connections" within ${READY_MS} ms`),
        ),
      READY_MS,
    );
    const check = () => {
      if (/Accepting (SSL bumped )?HTTP Socket connections/.test(output)) {
        clearTimeout(timer);
        resolve();
      }
    };
    child.stderr?.on('data', check);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`hand-configured squid exited (${code}) before it was ready:\n${output}`));
    });
  });
  await waitForListening(port, READY_MS, 'hand-configured squid');
  return { url: `http://127.0.0.1:${port}`, port, dir, conf, child };
}

export async function stopSquid(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGINT');
  let timer: NodeJS.Timeout | undefined;
  const late = await Promise.race([
    exited.then(() => false),
    new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(true), STOP_MS);
    }),
  ]);
  clearTimeout(timer);
  if (late) {
    child.kill('SIGKILL');
    await exited;
  }
}

export function gone(pid: number | undefined): boolean {
  if (pid === undefined) return true;
  try {
    process.kill(pid, 0);
    return false;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ESRCH';
  }
}
