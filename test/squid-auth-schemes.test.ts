/**
 * The built-in definitions squid-digest, squid-ntlm and squid-negotiate through the one runner:
 * the flexxagent profile passes on each (process runtime), and every `proxy-auth` result names
 * the scheme, the rounds and that they went over one kept connection; the container runtime does
 * the same on a small profile (the image has the helpers; the KDC is on the host's loopback).
 */
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { realmProblem } from '../harness/lab/kdc.ts';
import { loadKerberos } from '../harness/route/auth-schemes.ts';
import { runPassing } from './helpers/cli.ts';
import { labNet } from './helpers/lab-net.ts';
import { containerEngineProblem, requireComponent, squidProblem } from './helpers/requirements.ts';

const kerberosMissing = await loadKerberos().then((k) => (typeof k === 'string' ? k : undefined));
const opts =
  [
    requireComponent(t, 'squid', squidProblem()),
    requireComponent(t, 'the lab Kerberos realm', realmProblem()),
    requireComponent(t, 'the kerberos package', kerberosMissing),
  ].find((o) => o.skip) ?? {};
const EXPECT: Record<string, { used: string; rounds: number }> = {
  'squid-digest': { used: 'Digest', rounds: 1 },
  'squid-ntlm': { used: 'NTLM', rounds: 2 },
  'squid-negotiate': { used: 'Negotiate', rounds: 1 },
};

/** Every result passes (runPassing); every proxy-auth result names the scheme and rounds on one connection. */
async function judge(
  t: Test,
  runtime: 'process' | 'container',
  profiles: string,
  o: {
    expect?: Record<string, { used: string; rounds: number }>;
    /** Definition ids or files (default: the ids expected). */
    proxies?: string[];
    env?: Record<string, string>;
  } = {},
): Promise<void> {
  const expect = o.expect ?? EXPECT;
  const env = o.env;
  const report = await runPassing(t, {
    proxies: o.proxies ?? Object.keys(expect),
    profiles,
    runtime,
    labNet: await labNet(t),
    ...(env ? { env } : {}),
  });
  for (const [id, want] of Object.entries(expect)) {
    const auth = report.results.filter((r) => r.proxy === id && r.check === 'proxy-auth');
    t.ok(auth.length > 0, `${id} reports proxy-auth`);
    for (const r of auth) t.match(r.evidence, { ...want, connectionKept: true }, `${id} ${r.endpoint}`);
  }
}

t.test(
  'the three definitions pass the flexxagent profile (process)',
  { ...opts, timeout: 300_000 },
  async (t) => {
    await judge(t, 'process', 'flexxagent');
  },
);

t.test(
  'two negotiate definitions in one run share the lab realm: both pass, the KDC stops with the last',
  { ...opts, timeout: 300_000 },
  async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'proxycheck-test-two-realms-'));
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    const second = join(dir, 'squid-negotiate-b.yaml');
    writeFileSync(
      second,
      'id: squid-negotiate-b\nengine: squid\nconnectPorts: [443, 4433]\nauth: negotiate\n',
    );
    // the run's temp files in a directory of its own, where nothing else runs, made like /tmp:
    // squid's user (the process runtime) passes through it to the run directory, and its Kerberos
    // helper keeps its replay cache there (krb5_<uid>.rcache2, as MIT Kerberos does in any TMPDIR)
    chmodSync(dir, 0o755);
    const tmp = join(dir, 'tmp');
    mkdirSync(tmp);
    chmodSync(tmp, 0o1777);
    const negotiate = { used: 'Negotiate', rounds: 1 };
    // no setup_fail for the second: both share the realm
    await judge(t, 'process', 'flexxagent', {
      expect: { 'squid-negotiate': negotiate, 'squid-negotiate-b': negotiate },
      proxies: ['squid-negotiate', second],
      env: { TMPDIR: tmp },
    });
    t.same(
      readdirSync(tmp).filter((n) => n.startsWith('proxycheck-')),
      [],
      "the shared realm's directory and the run's are gone after the run",
    );
    const running = readdirSync('/proc')
      .filter((p) => /^\d+$/.test(p))
      .map((p) => {
        try {
          return readFileSync(`/proc/${p}/cmdline`, 'utf8').replaceAll('\0', ' ');
        } catch {
          return '';
        }
      })
      .filter((cmd) => cmd.includes(tmp));
    t.same(running, [], 'no KDC or squid of the run is left running');
  },
);

t.test(
  'and in the container runtime',
  {
    ...(opts.skip ? opts : requireComponent(t, 'a container engine', await containerEngineProblem())),
    timeout: 600_000,
  },
  async (t) => {
    await judge(t, 'container', 'flexxagent-brazil');
  },
);
