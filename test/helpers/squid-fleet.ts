/**
 * Shared by the squid fleet tests: the verdicts users expect on the flexxagent slice, a broken
 * launch for setup_fail evidence, and "is anything of ours still running" probes.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Test } from 'tap';
import { CORPORATE_CA_CN } from '../../harness/lab/pki.ts';
import type { RunReport } from '../../harness/model.ts';
import { squidConfig } from '../../harness/proxies/squid/config.ts';
import type { SquidLaunch } from '../../harness/proxies/squid/squid.ts';
import { pickPort } from '../../harness/proxies/toolkit/ports.ts';

export const FLEET = ['squid-default', 'squid-open', 'squid-auth', 'squid-bump', 'squid-splice'];

type Asserter = Pick<Test, 'equal' | 'match' | 'ok' | 'comment'>;

const BUMP: Record<string, string> = {
  connect: 'pass',
  'tls-interception': 'fail',
  pinning: 'fail',
  payload: 'dependency_fail',
  headers: 'dependency_fail',
  // IoT Hub (MQTT over WebSocket) and Service Bus (AMQP over WebSocket) never start their protocol
  protocol: 'dependency_fail',
};

/** default/open/auth/splice pass untouched; bump is caught intercepting and the pinned agent fails closed. */
export function assertFleetVerdicts(t: Asserter, report: RunReport, runtime: string): void {
  for (const p of report.proxies) {
    t.equal(p.runtime, runtime, `${p.id} ran as ${runtime}`);
    t.match(p.version, /^squid \d+\.\d+/, `${p.id} reports the real squid version`);
    t.ok(typeof p.startMs === 'number' && p.startMs > 0, `${p.id} start time recorded`);
    t.comment(`${p.id}: ${p.version}, started in ${p.startMs} ms`);
  }
  for (const r of report.results) {
    const want = r.proxy === 'squid-bump' ? BUMP[r.check] : 'pass';
    t.equal(r.outcome, want, `${r.proxy} ${r.check}: ${r.message}`);
    t.ok(r.matched, `${r.proxy} ${r.check} as expected`);
    if (r.proxy === 'squid-bump' && r.check === 'tls-interception') {
      t.match(r.message, CORPORATE_CA_CN, 'issuer is the corporate inspection CA');
    }
  }
}

/** Pids of live squid processes whose parent is `ppid`. */
export function squidChildrenOf(ppid: number): number[] {
  const out: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      const m = /^\d+ \((.*)\) (\S) (\d+)/.exec(stat);
      if (m && m[1] === 'squid' && m[2] !== 'Z' && Number(m[3]) === ppid) out.push(Number(name));
    } catch {
      // gone
    }
  }
  return out;
}

export function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !/^\d+ \(.*\) Z/.test(stat);
  } catch {
    return false;
  }
}

/** Ids of containers (any state, or only running ones) carrying every given label, via the docker CLI. */
export function containersLabelled(
  labels: Record<string, string>,
  opts: { running?: boolean } = {},
): string[] {
  const args = [
    'ps',
    opts.running ? '-q' : '-aq',
    ...Object.entries(labels).flatMap(([k, v]) => ['--filter', `label=${k}=${v}`]),
  ];
  const r = spawnSync('docker', args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`docker ${args.join(' ')}: ${r.stderr.trim()}`);
  return r.stdout.split('\n').filter(Boolean);
}

/** A squid-default launch whose config references an ACL that does not exist: squid dies with FATAL. */
export async function brokenLaunch(teardown: (fn: () => void) => void): Promise<SquidLaunch> {
  const dir = mkdtempSync(join(tmpdir(), 'proxycheck-test-broken-'));
  teardown(() => rmSync(dir, { recursive: true, force: true }));
  const etcDir = join(dir, 'etc');
  mkdirSync(etcDir, { recursive: true });
  const port = await pickPort();
  const { writeFileSync } = await import('node:fs');
  writeFileSync(join(etcDir, 'hosts'), '127.120.0.1\tbroken.test\n');
  return {
    id: 'squid-broken',
    policy: { connectPorts: 'stock', auth: 'none', inspection: { mode: 'none', hosts: [] } },
    port,
    dir,
    runDirPath: dir,
    etcDir,
    runId: 'test-broken',
    readyTimeoutMs: 20_000,
    writeConfig: (paths, etcAs) => {
      const text =
        squidConfig({ flavour: 'default', port, paths: { ...paths, hostsFile: `${etcAs}/hosts` } }) +
        'http_access allow undefined_acl_for_the_test\n';
      writeFileSync(join(etcDir, 'squid.conf'), text, { mode: 0o644 });
      return text;
    },
  };
}
