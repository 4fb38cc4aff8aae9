/**
 * `validate --proxy-auth negotiate` against a squid configured by hand here (our squid.conf lines,
 * not the adapters') with negotiate_kerberos_auth, a lab MIT KDC and a ticket from `kinit` in a
 * credential cache named by KRB5CCNAME, as a customer's machine has one. Without a ticket the same
 * validate fails `proxy-auth` naming Negotiate; bad option combinations are one-line errors.
 */
import { chmodSync, chownSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { labAddress } from '../harness/lab/addresses.ts';
import { realmProblem, startRealm } from '../harness/lab/kdc.ts';
import type { RunReport } from '../harness/model.ts';
import { runCommand } from '../harness/proxies/toolkit/command.ts';
import { localUser } from '../harness/proxies/toolkit/process.ts';
import { loadKerberos } from '../harness/route/auth-schemes.ts';
import { cli } from './helpers/cli.ts';
import { FIXTURE_SCENARIOS, fixtureScenarios } from './helpers/fixtures.ts';
import { baseConf, STOCK_POLICY, startSquid } from './helpers/hand-squid.ts';
import { labNet } from './helpers/lab-net.ts';
import { requireComponent, squidProblem } from './helpers/requirements.ts';

const kerberosMissing = await loadKerberos().then((k) => (typeof k === 'string' ? k : undefined));
const opts =
  [
    requireComponent(t, 'squid', squidProblem()),
    requireComponent(t, 'the lab Kerberos realm', realmProblem()),
    requireComponent(t, 'the kerberos package', kerberosMissing),
  ].find((o) => o.skip) ?? {};

function hostsFile(net: number): string {
  const lines = new Set<string>();
  for (const c of fixtureScenarios().catalogs.values())
    for (const e of c.endpoints) lines.add(`${labAddress(e.host, net)}\t${e.host}`);
  return [...lines].join('\n') + '\n';
}

async function validate(dir: string, net: number, args: string[], env: Record<string, string>) {
  const json = join(dir, `report-${Math.random().toString(36).slice(2)}.json`);
  const r = await cli(
    [
      'validate',
      '--scenarios',
      FIXTURE_SCENARIOS,
      '--profiles',
      'unpinned',
      '--lab-net',
      String(net),
      '--json',
      json,
      ...args,
    ],
    { timeoutMs: 120_000, env },
  );
  let report: RunReport | undefined;
  try {
    report = JSON.parse(readFileSync(json, 'utf8')) as RunReport;
  } catch {
    // the test asserts on r
  }
  return { ...r, report };
}

t.test(
  'validate --proxy-auth negotiate with a ticket from kinit',
  { ...opts, timeout: 200_000 },
  async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'proxycheck-test-vneg-'));
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    chmodSync(dir, 0o755); // squid's helper reads the keytab as squid's user
    const realm = await startRealm(join(dir, 'realm'));
    t.teardown(() => realm.stop());
    const keytab = join(dir, 'http.keytab');
    await realm.principal('HTTP/127.0.0.1', keytab);
    const proxyUser = process.getuid?.() === 0 ? localUser('proxy') : undefined;
    if (proxyUser) chownSync(keytab, proxyUser.uid, proxyUser.gid);
    const agentKeytab = join(dir, 'agent.keytab');
    await realm.principal('agent', agentKeytab);
    const ccache = `FILE:${join(dir, 'agent.ccache')}`;
    const env = { KRB5_CONFIG: realm.env.KRB5_CONFIG as string, KRB5CCNAME: ccache };
    const kinit = await runCommand('kinit', ['-k', '-t', agentKeytab, 'agent'], {
      what: 'kinit agent',
      timeoutMs: 10_000,
      env: { ...process.env, ...env },
    });
    t.equal(kinit.code, 0, `kinit: ${kinit.stderr}`);

    const net = await labNet(t);
    const squid = await startSquid(t, hostsFile(net), (d, port) =>
      baseConf(d, port, [
        ...STOCK_POLICY,
        `auth_param negotiate program /usr/lib/squid/negotiate_kerberos_auth -k ${keytab} -s HTTP/127.0.0.1@${realm.realm}`,
        'auth_param negotiate children 2 startup=1 idle=1',
        'auth_param negotiate keep_alive on',
        'acl authed proxy_auth REQUIRED',
        'http_access allow localhost authed',
        'http_access deny all',
      ]),
    );

    const ok = await validate(dir, net, ['--proxy', squid.url, '--proxy-auth', 'negotiate'], env);
    t.equal(ok.code, 0, `${ok.stdout.slice(-1500)}\n${ok.stderr.slice(-1500)}`);
    const auth = ok.report?.results.filter((r) => r.check === 'proxy-auth') ?? [];
    t.ok(auth.length > 0, 'proxy-auth is reported');
    for (const r of auth) {
      t.equal(r.outcome, 'pass', r.message);
      t.match(r.evidence, { used: 'Negotiate', rounds: 1, connectionKept: true });
    }
    t.notMatch(ok.stdout + ok.stderr, /Negotiate [A-Za-z0-9+/]{20,}/, 'no token printed');

    // no ticket: the 407 stands, and the verdict names Negotiate
    const none = await validate(dir, net, ['--proxy', squid.url, '--proxy-auth', 'negotiate'], {
      ...env,
      KRB5CCNAME: `FILE:${join(dir, 'empty.ccache')}`,
    });
    t.equal(none.code, 1);
    const failed = none.report?.results.find((r) => r.check === 'proxy-auth');
    t.equal(failed?.outcome, 'fail');
    t.match(
      failed?.message,
      /407 the agent cannot answer: Negotiate: the agent has no Kerberos ticket for HTTP@127\.0\.0\.1/,
    );

    // options: one line, exit 2
    const pw = await cli([
      'validate',
      '--proxy',
      squid.url,
      '--proxy-auth',
      'negotiate',
      '--proxy-password',
      'x',
    ]);
    t.equal(pw.code, 2);
    t.match(pw.stderr, /--proxy-auth negotiate takes no password/);
    t.notMatch(pw.stderr, /\n\s+at /, 'no stack trace');
    const bad = await cli(['validate', '--proxy', squid.url, '--proxy-auth', 'kerberos5']);
    t.equal(bad.code, 2);
    t.match(bad.stderr, /--proxy-auth kerberos5: not a scheme/);
  },
);
