/**
 * The squid config generator: every flavour parses with the real `squid -k parse`, each carries its
 * policy, and the htpasswd hashes are accepted by squid's own basic_ncsa_auth.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { createLabPki } from '../harness/lab/pki.ts';
import {
  catalogPorts,
  SQUID_FLAVOURS,
  type SquidFlavour,
  spliceHostsOf,
  squidConfig,
} from '../harness/proxies/squid/config.ts';
import { htpasswdLine, md5crypt } from '../harness/proxies/squid/htpasswd.ts';
import { SQUID_HELPER_DIR } from '../harness/proxies/squid/process.ts';
import { loadScenarios } from '../harness/scenarios.ts';
import { requireComponent, squidProblem } from './helpers/requirements.ts';

const set = loadScenarios();

function tmp(): string {
  const dir = mkdtempSync(join(tmpdir(), 'proxycheck-test-squidconf-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

let pki: ReturnType<typeof createLabPki> | undefined;

async function configFor(flavour: SquidFlavour, dir: string): Promise<string> {
  pki ??= createLabPki(tmp());
  const { corporate, labRoot } = await pki;
  writeFileSync(join(dir, 'hosts'), '127.120.1.1\texample.test\n');
  writeFileSync(join(dir, 'htpasswd'), htpasswdLine('agent', 'pw'));
  return squidConfig({
    flavour,
    port: 3128,
    connectPorts: catalogPorts(set),
    spliceHosts: spliceHostsOf(set),
    paths: {
      pidFile: join(dir, 'squid.pid'),
      cacheLog: join(dir, 'cache.log'),
      accessLog: `stdio:${join(dir, 'access.log')}`,
      coredumpDir: dir,
      hostsFile: join(dir, 'hosts'),
      helperDir: SQUID_HELPER_DIR,
      htpasswd: join(dir, 'htpasswd'),
      signingCert: corporate.cert.certFile,
      signingKey: corporate.cert.keyFile,
      originCa: labRoot.cert.certFile,
      sslDb: join(dir, 'ssl_db'),
    },
  });
}

t.test('policies', async (t) => {
  const dir = tmp();
  const conf = Object.fromEntries(
    await Promise.all(SQUID_FLAVOURS.map(async (f) => [f, await configFor(f, dir)] as const)),
  ) as Record<SquidFlavour, string>;
  t.match(conf.default, /^acl SSL_ports port 443$/m, 'default: Debian SSL_ports');
  t.match(conf.default, /^http_access deny CONNECT !SSL_ports$/m, 'default: CONNECT only to SSL_ports');
  t.notMatch(conf.open, /SSL_ports/, 'open: no SSL_ports rule');
  const allowed = [...conf.open.matchAll(/^acl catalog_ports port ([\d ]+)$/gm)].flatMap((m) =>
    (m[1] ?? '').split(' ').map(Number),
  );
  t.same(allowed, catalogPorts(set), 'open: CONNECT allowed to exactly the agent-scope catalog ports');
  t.notOk(catalogPorts(set).includes(3306), 'out-of-scope ports (a database) are not opened');
  t.match(conf.auth, /^auth_param basic program \S+\/basic_ncsa_auth \S+htpasswd$/m);
  t.match(conf.auth, /^http_access allow localhost authed$/m);
  t.match(conf.bump, /^ssl_bump peek step1\nssl_bump bump all$/m, 'bump: peek step1, bump all');
  t.notMatch(conf.bump, /splice/);
  t.match(conf.splice, /^ssl_bump peek step1\nssl_bump splice no_inspect\nssl_bump bump all$/m);
  for (const f of SQUID_FLAVOURS) {
    t.match(conf[f], /^hosts_file /m, `${f}: hosts_file`);
    t.match(conf[f], /^dns_nameservers 127\.0\.0\.1$/m, `${f}: DNS on loopback only`);
    t.match(conf[f], /^shutdown_lifetime 1 seconds$/m, `${f}: short shutdown_lifetime`);
    t.match(conf[f], /^http_port 127\.0\.0\.1:3128\b/m, `${f}: loopback listener`);
  }
  t.throws(() => squidConfig({ flavour: 'splice', port: 1, paths: {} as never }), /needs/);
});

t.test('splice list: every must-not-inspect or pinned catalog host, tenant resolved', async (t) => {
  const hosts = spliceHostsOf({ ...set, tenant: 'acme7' });
  t.ok(hosts.includes('flxsbnameacme7.servicebus.windows.net'), 'tenant resolved');
  const expected = [...set.catalogs.values()]
    .flatMap((c) => c.endpoints)
    .filter((e) => e.mustNotInspect || e.pinned).length;
  t.ok(hosts.length > 0 && hosts.length <= expected);
  t.notOk(
    hosts.some((h) => h.includes('{tenant}')),
    'no template left',
  );
});

t.test('md5crypt ($apr1$) matches the reference algorithm', async (t) => {
  // reference: `openssl passwd -apr1 -salt abcdefgh secret`
  t.equal(md5crypt('secret', 'abcdefgh'), '$apr1$abcdefgh$h9FWgUz3n9YxylKLlR5SQ/');
  t.match(md5crypt('x'), /^\$apr1\$[./0-9A-Za-z]{8}\$[./0-9A-Za-z]{22}$/);
  t.throws(() => htpasswdLine('a:b', 'x'), /must not contain/);
});

t.test('squid -k parse accepts every generated config', async (t) => {
  const opts = requireComponent(t, 'squid', squidProblem());
  await t.test('parse', opts, async (t) => {
    for (const flavour of SQUID_FLAVOURS) {
      const dir = tmp();
      const file = join(dir, `${flavour}.conf`);
      writeFileSync(file, await configFor(flavour, dir));
      const r = spawnSync('/usr/sbin/squid', ['-k', 'parse', '-f', file], { encoding: 'utf8' });
      const out = r.stdout + r.stderr;
      t.equal(r.status, 0, `squid-${flavour}: squid -k parse exits 0`);
      const problems = out.split('\n').filter((l) => /FATAL|ERROR|WARNING|unrecognized|Bungled/.test(l));
      t.same(problems, [], `squid-${flavour}: no errors or warnings`);
      t.match(out, /Processing: http_access deny all/, `squid-${flavour}: parsed to the end`);
    }
  });
});

t.test("squid's basic_ncsa_auth accepts our htpasswd", async (t) => {
  const opts = requireComponent(t, 'squid', squidProblem());
  await t.test('basic_ncsa_auth', opts, async (t) => {
    const dir = tmp();
    mkdirSync(dir, { recursive: true });
    const file = join(dir, 'htpasswd');
    const cases = ['plain', 'with space', 'colon:inside', 'ñandú€', 'x'.repeat(40)];
    writeFileSync(file, cases.map((pw, i) => htpasswdLine(`user${i}`, pw)).join(''));
    const input = cases.map((pw, i) => `user${i} ${encodeURIComponent(pw)}\n`).join('') + 'user0 wrong\n';
    const r = spawnSync(join(SQUID_HELPER_DIR, 'basic_ncsa_auth'), [file], { input, encoding: 'utf8' });
    const lines = r.stdout.trim().split('\n');
    t.same(
      lines.map((l) => l.split(' ')[0]),
      [...cases.map(() => 'OK'), 'ERR'],
      'every password OK, a wrong one ERR',
    );
  });
});

t.test('--runtime takes auto, container or process only (usage error, exit 2)', async (t) => {
  const { spawnSync: run } = await import('node:child_process');
  const bin = new URL('../bin/proxycheck.js', import.meta.url).pathname;
  const r = run(process.execPath, [bin, 'run', '--proxies', 'squid-default', '--runtime', 'vm'], {
    encoding: 'utf8',
  });
  t.equal(r.status, 2);
  t.equal(r.stderr, 'proxycheck: --runtime must be one of auto, container, process, not "vm"\n');
});
