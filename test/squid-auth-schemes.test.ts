/**
 * The built-in definitions squid-digest, squid-ntlm and squid-negotiate through the one runner:
 * the flexxagent profile passes on each (process runtime), and every `proxy-auth` result names
 * the scheme, the rounds and that they went over one kept connection; the container runtime does
 * the same on a small profile (the image has the helpers; the KDC is on the host's loopback).
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { realmProblem } from '../harness/lab/kdc.ts';
import type { RunReport } from '../harness/model.ts';
import { loadKerberos } from '../harness/route/auth-schemes.ts';
import { cli } from './helpers/cli.ts';
import { labNet } from './helpers/lab-net.ts';
import { containerEngineProblem, requireComponent, squidProblem } from './helpers/requirements.ts';

const kerberosMissing = await loadKerberos().then((k) => (typeof k === 'string' ? k : undefined));
const opts =
  [
    requireComponent(t, 'squid', squidProblem()),
    requireComponent(t, 'the lab Kerberos realm', realmProblem()),
    requireComponent(t, 'the kerberos package', kerberosMissing),
  ].find((o) => o.skip) ?? {};
const PROXIES = ['squid-digest', 'squid-ntlm', 'squid-negotiate'];
const EXPECT: Record<string, { used: string; rounds: number }> = {
  'squid-digest': { used: 'Digest', rounds: 1 },
  'squid-ntlm': { used: 'NTLM', rounds: 2 },
  'squid-negotiate': { used: 'Negotiate', rounds: 1 },
};

async function run(t: Test, runtime: string, profile: string) {
  const dir = mkdtempSync(join(tmpdir(), 'proxycheck-test-authdefs-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const json = join(dir, 'report.json');
  const r = await cli(
    [
      'run',
      '--proxies',
      PROXIES.join(','),
      '--profiles',
      profile,
      '--runtime',
      runtime,
      '--lab-net',
      String(await labNet(t)),
      '--json',
      json,
    ],
    { timeoutMs: 240_000 },
  );
  t.equal(r.code, 0, `${r.stdout.slice(-1500)}\n${r.stderr.slice(-1500)}`);
  return JSON.parse(readFileSync(json, 'utf8')) as RunReport;
}

function judge(t: Test, report: RunReport) {
  for (const id of PROXIES) {
    const mine = report.results.filter((r) => r.proxy === id);
    t.ok(mine.length > 0, `${id} has results`);
    t.same(
      mine.filter((r) => r.outcome !== 'pass').map((r) => `${r.check} ${r.endpoint}: ${r.message}`),
      [],
      `${id}: every result passes`,
    );
    const auth = mine.filter((r) => r.check === 'proxy-auth');
    t.ok(auth.length > 0, `${id} reports proxy-auth`);
    for (const r of auth) t.match(r.evidence, { ...EXPECT[id], connectionKept: true }, `${id} ${r.endpoint}`);
  }
}

t.test(
  'the three definitions pass the flexxagent profile (process)',
  { ...opts, timeout: 300_000 },
  async (t) => {
    judge(t, await run(t, 'process', 'flexxagent'));
  },
);

t.test(
  'and in the container runtime',
  {
    ...(opts.skip ? opts : requireComponent(t, 'a container engine', await containerEngineProblem())),
    timeout: 600_000,
  },
  async (t) => {
    judge(t, await run(t, 'container', 'flexxagent-brazil'));
  },
);
