/**
 * The squid config generator: every flavour and every policy shape parses with the real
 * `squid -k parse`, each carries its policy, a flavour and its named policy write the same config,
 * and the htpasswd hashes are accepted by squid's own basic_ncsa_auth.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { createLabPki } from '../harness/lab/pki.ts';
import {
  catalogPorts,
  describePolicy,
  FLAVOUR_POLICIES,
  SQUID_FLAVOURS,
  type SquidFlavour,
  type SquidPaths,
  type SquidPolicy,
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

async function pathsIn(dir: string): Promise<SquidPaths> {
  pki ??= createLabPki(tmp());
  const { corporate, labRoot } = await pki;
  writeFileSync(join(dir, 'hosts'), '127.120.1.1\texample.test\n');
  writeFileSync(join(dir, 'htpasswd'), htpasswdLine('agent', 'pw'));
  return {
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
  };
}

async function configFor(flavour: SquidFlavour, dir: string): Promise<string> {
  return squidConfig({
    flavour,
    port: 3128,
    connectPorts: catalogPorts(set),
    spliceHosts: spliceHostsOf(set),
    paths: await pathsIn(dir),
  });
}

const none = { mode: 'none' as const, hosts: [] };

/** Every policy shape beyond the flavours: port lists, any port, inspection modes, knobs. */
const SHAPES: Record<string, SquidPolicy> = {
  'ports-443-8883': { connectPorts: [443, 8883], auth: 'none', inspection: none },
  'any-port': { connectPorts: 'any', auth: 'none', inspection: none },
  'any-port-auth': { connectPorts: 'any', auth: 'basic', inspection: none },
  'inspect-only': {
    connectPorts: 'stock',
    auth: 'none',
    inspection: { mode: 'only', hosts: ['a.example.test', 'b.example.test'] },
  },
  'inspect-all-except': {
    connectPorts: [443, 8883],
    auth: 'basic',
    inspection: { mode: 'all-except', hosts: ['pinned.example.test'] },
  },
  'inspect-all-idle': {
    connectPorts: 'stock',
    auth: 'none',
    inspection: { mode: 'all', hosts: [] },
    idleTimeoutSeconds: 3,
  },
  'idle-plain': { connectPorts: 'any', auth: 'none', inspection: none, idleTimeoutSeconds: 5 },
  'no-via-no-xff': {
    connectPorts: 'stock',
    auth: 'none',
    inspection: none,
    via: false,
    xForwardedFor: false,
  },
  'via-only-off': { connectPorts: 'stock', auth: 'none', inspection: none, via: false },
  everything: {
    connectPorts: Array.from({ length: 20 }, (_, i) => 9000 + i),
    auth: 'basic',
    inspection: { mode: 'only', hosts: Array.from({ length: 10 }, (_, i) => `h${i}.example.test`) },
    idleTimeoutSeconds: 4,
    via: false,
    xForwardedFor: false,
  },
};

async function policyConfig(name: string, dir: string): Promise<string> {
  return squidConfig({
    policy: SHAPES[name] as SquidPolicy,
    label: name,
    port: 3128,
    paths: await pathsIn(dir),
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
  t.match(conf.open, /^http_access deny !Safe_ports\nhttp_access deny CONNECT !allowed_ports$/m);
  const allowed = [...conf.open.matchAll(/^acl allowed_ports port ([\d ]+)$/gm)].flatMap((m) =>
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

t.test('a flavour and its named policy write the same config', async (t) => {
  const dir = tmp();
  const paths = await pathsIn(dir);
  for (const f of SQUID_FLAVOURS) {
    const viaPolicy = squidConfig({
      policy: FLAVOUR_POLICIES[f](set),
      label: `squid-${f}`,
      port: 3128,
      paths,
    });
    t.equal(viaPolicy, await configFor(f, dir), `squid-${f}`);
  }
  t.same(FLAVOUR_POLICIES.default(set), { connectPorts: 'stock', auth: 'none', inspection: none });
  t.same(FLAVOUR_POLICIES.open(set).connectPorts, catalogPorts(set));
  t.same(FLAVOUR_POLICIES.auth(set), { connectPorts: 'stock', auth: 'basic', inspection: none });
  t.same(FLAVOUR_POLICIES.bump(set).inspection, { mode: 'all', hosts: [] });
  t.same(FLAVOUR_POLICIES.splice(set).inspection, { mode: 'all-except', hosts: spliceHostsOf(set) });
  for (const f of ['default', 'auth', 'bump'] as const) {
    t.notMatch(await configFor(f, dir), /read_timeout|client_idle_pconn_timeout|^via |forwarded_for/m);
  }
});

t.test('policy shapes', async (t) => {
  const dir = tmp();
  const conf = Object.fromEntries(
    await Promise.all(Object.keys(SHAPES).map(async (n) => [n, await policyConfig(n, dir)] as const)),
  );
  const p = conf['ports-443-8883'];
  t.match(p, /^# generated by proxycheck: ports-443-8883$/m, 'the label names the proxy');
  t.match(p, /^acl allowed_ports port 443 8883$/m);
  t.match(p, /^http_access deny !Safe_ports\nhttp_access deny CONNECT !allowed_ports$/m);
  t.match(p, /^acl Safe_ports port 1025-65535 # unregistered ports$/m, 'Safe_ports kept');
  t.notMatch(p, /SSL_ports|ssl_bump/);
  const any = conf['any-port'];
  t.match(any, /^http_access deny !Safe_ports$/m, 'any: Safe_ports kept');
  t.notMatch(any, /deny CONNECT/, 'any: no CONNECT port rule');
  t.match(conf['any-port-auth'], /^http_access allow localhost authed$/m);
  const only = conf['inspect-only'];
  t.match(only, /^http_port \S+ ssl-bump tls-cert=/m, 'only: bumping port');
  t.match(only, /^sslcrtd_program /m);
  t.match(
    only,
    /^acl inspect_hosts ssl::server_name a\.example\.test b\.example\.test\nssl_bump peek step1\nssl_bump bump inspect_hosts\nssl_bump splice all$/m,
  );
  t.match(
    conf['inspect-all-except'],
    /^ssl_bump peek step1\nssl_bump splice no_inspect\nssl_bump bump all$/m,
  );
  t.match(conf['inspect-all-idle'], /^ssl_bump peek step1\nssl_bump bump all$/m);
  for (const [name, n] of [
    ['inspect-all-idle', 3],
    ['idle-plain', 5],
  ] as const) {
    for (const d of [
      'read_timeout',
      'client_idle_pconn_timeout',
      'request_timeout',
      'request_start_timeout',
    ]) {
      t.match(
        conf[name],
        new RegExp(`^${d} ${n} seconds$`, 'm'),
        `${name}: ${d} N, as a customer's squid.conf says it`,
      );
    }
  }
  t.match(conf['no-via-no-xff'], /^via off\nforwarded_for delete$/m);
  t.match(conf['via-only-off'], /^via off$/m);
  t.notMatch(conf['via-only-off'], /forwarded_for/);
  const all = conf.everything ?? '';
  t.equal([...all.matchAll(/^acl allowed_ports port /gm)].length, 2, '20 ports in groups of 16');
  t.equal([...all.matchAll(/^acl inspect_hosts ssl::server_name /gm)].length, 2, '10 hosts in groups of 8');
  t.throws(
    () =>
      squidConfig({
        policy: { ...SHAPES['inspect-only'], inspection: { mode: 'only', hosts: [] } } as SquidPolicy,
        port: 1,
        paths: {} as never,
      }),
    /needs/,
  );
  t.throws(
    () =>
      squidConfig({
        policy: { connectPorts: 'stock', auth: 'none', inspection: none, idleTimeoutSeconds: 0 },
        port: 1,
        paths: {
          pidFile: '/p',
          cacheLog: '/c',
          accessLog: 'none',
          coredumpDir: '/',
          hostsFile: '/h',
          helperDir: '/x',
        },
      }),
    /positive whole number/,
  );
  t.match(describePolicy(SHAPES.everything as SquidPolicy), /idle timeout 4 s, no Via, no X-Forwarded-For$/);
  t.match(describePolicy(SHAPES['inspect-only'] as SquidPolicy), /bump only 2 hosts/);
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
  await t.test('parse policy shapes', opts, async (t) => {
    for (const name of Object.keys(SHAPES)) {
      const dir = tmp();
      const file = join(dir, `${name}.conf`);
      writeFileSync(file, await policyConfig(name, dir));
      const r = spawnSync('/usr/sbin/squid', ['-k', 'parse', '-f', file], { encoding: 'utf8' });
      const out = r.stdout + r.stderr;
      t.equal(r.status, 0, `${name}: squid -k parse exits 0`);
      // `via off` draws squid's one warning, which is the point of the knob
      const expected = SHAPES[name]?.via === false ? [/WARNING: HTTP requires the use of Via$/] : [];
      const problems = out.split('\n').filter((l) => /FATAL|ERROR|WARNING|unrecognized|Bungled/.test(l));
      t.equal(
        problems.length,
        expected.length,
        `${name}: no errors or warnings${expected.length ? ' but the Via one' : ''}`,
      );
      for (const [i, re] of expected.entries()) t.match(problems[i], re);
      t.match(out, /Processing: http_access deny all/, `${name}: parsed to the end`);
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
