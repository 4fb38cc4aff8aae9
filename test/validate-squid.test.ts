import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { labAddress } from '../harness/lab/addresses.ts';
import type { RunReport } from '../harness/model.ts';
import { htpasswdLine } from '../harness/proxies/squid/htpasswd.ts';
import { SQUID_HELPER_DIR } from '../harness/proxies/squid/process.ts';
import { insertSquidLines } from '../harness/report/remediation.ts';
import { cli } from './helpers/cli.ts';
import { FIXTURE_SCENARIOS, fixtureScenarios } from './helpers/fixtures.ts';
import {
  baseConf,
  gone,
  STOCK_POLICY,
  startSquid as startHandSquid,
  stopSquid,
} from './helpers/hand-squid.ts';
import { labNet } from './helpers/lab-net.ts';
import { requireComponent, squidProblem } from './helpers/requirements.ts';

// many CLI runs and real proxies: on a loaded 2-core machine this takes minutes
t.setTimeout(400_000);

const opts = requireComponent(t, 'squid', squidProblem());

/** Every fixture host at its address on lab net `net` (the scheme `proxycheck lab hosts` prints). */
function hostsFile(net: number): string {
  const lines = new Set<string>();
  for (const c of fixtureScenarios().catalogs.values())
    for (const e of c.endpoints) lines.add(`${labAddress(e.host, net)}\t${e.host}`);
  return [...lines].join('\n') + '\n';
}

const startSquid = (t: Test, net: number, make: (dir: string, port: number) => string) =>
  startHandSquid(t, hostsFile(net), make);
/** `proxycheck validate` of the fixture scenarios, its lab on net `net`. */
async function validate(t: Test, net: number, args: string[]) {
  const dir = mkdtempSync(join(tmpdir(), 'proxycheck-test-vsquid-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const json = join(dir, 'report.json');
  const r = await cli(
    ['validate', '--scenarios', FIXTURE_SCENARIOS, '--lab-net', String(net), '--json', json, ...args],
    { timeoutMs: 150_000 },
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
  'a stock-policy squid refuses 13000 with 403; the printed fix makes it pass',
  { ...opts, timeout: 240_000 },
  async (t) => {
    // one net for the test: both squids' hosts files and every validate run use it
    const net = await labNet(t);
    const squid = await startSquid(t, net, (dir, port) =>
      baseConf(dir, port, [...STOCK_POLICY, 'http_access allow localhost', 'http_access deny all']),
    );
    const r = await validate(t, net, ['--proxy', squid.url, '--profiles', 'odd-port,unpinned']);
    t.equal(r.code, 1, r.stderr);
    const refused = r.report?.results.find(
      (x) => x.endpoint === 'odd-port.proxycheck.test:13000' && x.check === 'connect',
    );
    t.equal(refused?.outcome, 'fail');
    t.equal(
      refused?.message,
      'CONNECT odd-port.proxycheck.test:13000 answered "HTTP/1.1 403 Forbidden", not 200 (X-Squid-Error: ERR_ACCESS_DENIED 0)',
    );
    t.match(refused?.evidence, {
      answerHead: /^HTTP\/1\.1 403 Forbidden\r\n[\s\S]*X-Squid-Error: ERR_ACCESS_DENIED/,
    });
    t.equal(
      r.report?.results.find((x) => x.endpoint === 'open.proxycheck.test:443' && x.check === 'payload')
        ?.outcome,
      'pass',
      '443 goes through',
    );
    const rem = r.report?.remediation?.[0];
    t.equal(rem?.product, 'squid', 'recognised from its own answer');
    t.match(rem?.productEvidence, /squid\/\d/, 'from the Server header it sent');
    t.same(rem?.squidConf, ['acl SSL_ports port 13000']);
    t.match(
      r.stdout,
      /\nRemediation\nproxy external \(squid \d+\.\d+ \(high confidence\), from .*\):\n {2}- Allow CONNECT to port 13000: /,
    );
    t.match(r.stdout, /\n {4}acl SSL_ports port 13000\n/);

    // apply the printed lines where the advice says, restart, validate again
    const fixed = await startSquid(t, net, (dir, port) =>
      insertSquidLines(
        baseConf(dir, port, [...STOCK_POLICY, 'http_access allow localhost', 'http_access deny all']),
        rem?.squidConf ?? [],
      ),
    );
    t.match(fixed.conf, /^acl SSL_ports port 443\nacl SSL_ports port 13000\n/m);
    const again = await validate(t, net, ['--proxy', fixed.url, '--profiles', 'odd-port,unpinned']);
    t.equal(again.code, 0, again.stdout);
    t.notMatch(again.stdout, /Remediation/);
    await stopSquid(squid.child);
    await stopSquid(fixed.child);
    t.ok(gone(squid.child.pid) && gone(fixed.child.pid), 'both squids are gone');
  },
);

t.test(
  'a squid with basic auth: a wrong password gives a 407 verdict, the right one passes',
  { ...opts, timeout: 240_000 },
  async (t) => {
    // one net for the test: both squids' hosts files and every validate run use it
    const net = await labNet(t);
    const squid = await startSquid(t, net, (dir, port) => {
      writeFileSync(join(dir, 'htpasswd'), htpasswdLine('agent', 'right-pass'), { mode: 0o644 });
      return baseConf(dir, port, [
        ...STOCK_POLICY,
        `auth_param basic program ${SQUID_HELPER_DIR}/basic_ncsa_auth ${dir}/htpasswd`,
        'auth_param basic children 2 startup=1 idle=1',
        'auth_param basic realm proxycheck-test',
        'acl authed proxy_auth REQUIRED',
        'http_access allow localhost authed',
        'http_access deny all',
      ]);
    });
    const wrong = await validate(t, net, [
      '--proxy',
      squid.url,
      '--proxy-user',
      'agent',
      '--proxy-password',
      'wrong-pass',
      '--profiles',
      'unpinned',
    ]);
    t.equal(wrong.code, 1, wrong.stderr);
    t.notMatch(wrong.stderr, /error|\n\s+at /i, 'a verdict, not an error');
    const connect = wrong.report?.results.find((x) => x.check === 'connect');
    t.match(connect?.message, 'answered "HTTP/1.1 407 Proxy Authentication Required", not 200');
    t.match(connect?.evidence, { answerHead: /Proxy-Authenticate: Basic realm="proxycheck-test"/ });
    t.same(wrong.report?.remediation?.[0]?.credentials, ['open.proxycheck.test:443']);
    t.same(wrong.report?.remediation?.[0]?.squidConf, [], 'no http_access line offered');
    t.match(wrong.stdout, /Give the agents proxy credentials/);
    t.notMatch(wrong.stdout + wrong.stderr, /wrong-pass|right-pass/, 'passwords never printed');
    const right = await validate(t, net, [
      '--proxy',
      `http://agent:right-pass@127.0.0.1:${squid.port}`,
      '--profiles',
      'unpinned',
    ]);
    t.equal(right.code, 0, right.stdout);
    await stopSquid(squid.child);
    t.ok(gone(squid.child.pid), 'squid is gone');
  },
);
