/**
 * Open-source proxies from Debian packages, started by hand in their stock configuration as a
 * customer runs them: the package's config copied into a temp dir, changed only where a forward
 * proxy needs it (Apache: a2enmod proxy proxy_connect proxy_http and the commented "ProxyRequests
 * On" block of proxy.conf; Traffic Server: remap_required off) and where running in a temp dir
 * needs it (listen on a loopback port, pid/log/cache paths). Lab hosts resolve from a hosts file
 * bind-mounted over /etc/hosts in a mount namespace of the proxy's own (unshare -m), as a
 * customer's DNS would answer. Every proxy is killed in teardown.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Test } from 'tap';
import { pickPort } from '../../harness/proxies/toolkit/ports.ts';
import { chownTree, deathBound, localUser } from '../../harness/proxies/toolkit/process.ts';
import { waitForListening } from '../../harness/proxies/toolkit/ready.ts';

const READY_MS = 20_000;
const STOP_MS = 10_000;

export interface DebianProxy {
  url: string;
  dir: string;
  child: ChildProcess;
  /** What it printed (stdout and stderr). */
  output(): string;
}

/** undefined when `bin` is installed and unshare can give it a mount namespace, else why not. */
export function debianProxyProblem(bin: string, pkg: string): string | undefined {
  if (!existsSync(bin)) return `${bin} is missing (apt-get install ${pkg})`;
  const u = spawnSync('unshare', ['-m', 'true'], { encoding: 'utf8' });
  if (u.status !== 0) return `unshare -m failed (needs root): ${u.stderr.trim()}`;
  return undefined;
}

function replace(file: string, from: RegExp, to: string): void {
  const text = readFileSync(file, 'utf8');
  if (!from.test(text)) throw new Error(`${file}: ${from} not found in the stock config`);
  writeFileSync(file, text.replace(from, to));
}

/** Runs `argv` in its own mount namespace with `hosts` over /etc/hosts, killed with the test. */
async function launch(
  t: Test,
  what: string,
  dir: string,
  hosts: string,
  port: number,
  argv: string[],
  env: Record<string, string> = {},
): Promise<DebianProxy> {
  writeFileSync(join(dir, 'hosts'), hosts);
  const quoted = argv.map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ');
  const spec = deathBound('unshare', [
    '-m',
    'sh',
    '-c',
    `mount --bind '${dir}/hosts' /etc/hosts && exec ${quoted}`,
  ]);
  const child = spawn(spec.file, spec.argv, {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...env },
  });
  let out = '';
  child.stdout?.on('data', (d) => (out += d));
  child.stderr?.on('data', (d) => (out += d));
  t.teardown(() => stop(child));
  const died = new Promise<never>((_, reject) =>
    child.once('exit', (code) => reject(new Error(`${what} exited (${code}) before it listened:\n${out}`))),
  );
  await Promise.race([waitForListening(port, READY_MS, what), died]);
  return { url: `http://127.0.0.1:${port}`, dir, child, output: () => out };
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
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

function tempDir(t: Test, name: string): string {
  const dir = mkdtempSync(join(tmpdir(), `proxycheck-test-${name}-`));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/**
 * Debian's apache2 as a forward proxy: /etc/apache2 copied, `a2enmod proxy proxy_connect
 * proxy_http` (symlinks), proxy.conf's commented forward-proxy block enabled with "Require local"
 * in place of "Require all denied", `Listen 127.0.0.1:<port>`. Nothing else changed.
 */
export async function startApache(
  t: Test,
  hosts: string,
  /** A customer's changes: more modules, lines for the server config and for the <Proxy *> block. */
  change: { modules?: string[]; server?: string[]; proxyBlock?: string[] } = {},
): Promise<DebianProxy> {
  const dir = tempDir(t, 'apache2');
  const conf = join(dir, 'conf');
  cpSync('/etc/apache2', conf, { recursive: true });
  for (const m of ['proxy', 'proxy_connect', 'proxy_http', ...(change.modules ?? [])]) {
    for (const ext of ['load', 'conf']) {
      const target = join(conf, 'mods-available', `${m}.${ext}`);
      const link = join(conf, 'mods-enabled', `${m}.${ext}`);
      if (existsSync(target) && !existsSync(link)) symlinkSync(`../mods-available/${m}.${ext}`, link);
    }
  }
  const proxyConf = join(conf, 'mods-available', 'proxy.conf');
  replace(proxyConf, /^#ProxyRequests On$/m, 'ProxyRequests On');
  replace(proxyConf, /^#<Proxy \*>$/m, '<Proxy *>');
  replace(proxyConf, /^#( +AddDefaultCharset off)$/m, '$1');
  replace(proxyConf, /^# +Require all denied$/m, '   Require local');
  replace(
    proxyConf,
    /^#<\/Proxy>$/m,
    [...(change.proxyBlock ?? []).map((l) => `   ${l}`), '</Proxy>', ...(change.server ?? [])].join('\n'),
  );
  const port = await pickPort();
  replace(join(conf, 'ports.conf'), /^Listen 80$/m, `Listen 127.0.0.1:${port}`);
  for (const d of ['run', 'lock', 'log']) mkdirSync(join(dir, d));
  return launch(
    t,
    'apache2',
    dir,
    hosts,
    port,
    ['/usr/sbin/apache2', '-d', conf, '-f', join(conf, 'apache2.conf'), '-DFOREGROUND'],
    {
      APACHE_RUN_USER: 'www-data',
      APACHE_RUN_GROUP: 'www-data',
      APACHE_PID_FILE: join(dir, 'run', 'apache2.pid'),
      APACHE_RUN_DIR: join(dir, 'run'),
      APACHE_LOCK_DIR: join(dir, 'lock'),
      APACHE_LOG_DIR: join(dir, 'log'),
      LANG: 'C',
    },
  );
}

/** `proxycheck lab hosts` for lab net `net`: a hosts file every lab host resolves from. */
export function labHostsFile(bin: string, net: number): string {
  const r = spawnSync(process.execPath, [bin, 'lab', 'hosts', '--lab-net', String(net)], {
    encoding: 'utf8',
  });
  if (r.status !== 0) throw new Error(`proxycheck lab hosts failed: ${r.stderr}`);
  return r.stdout;
}

/**
 * Debian's trafficserver as a forward proxy: /etc/trafficserver copied; records.config changed
 * where a forward proxy needs it (remap_required 0) and where a temp dir needs it (server_ports on
 * 127.0.0.1:<port> only: the stock "8080 8080:ipv6" binds every address; the lab hosts file as
 * hostdb's host file, DNS to 127.0.0.1; storage.config's cache in the temp dir). A runroot points
 * every path there. It drops to the trafficserver user as the stock config says.
 */
export async function startTrafficServer(
  t: Test,
  hosts: string,
  /** A customer's changes: records.config lines appended (a later CONFIG line wins). */
  records: string[] = [],
): Promise<DebianProxy> {
  const dir = tempDir(t, 'trafficserver');
  const etc = join(dir, 'etc');
  cpSync('/etc/trafficserver', etc, { recursive: true });
  for (const d of ['run', 'log', 'cache', 'var']) mkdirSync(join(dir, d));
  const port = await pickPort();
  const recordsFile = join(etc, 'records.config');
  replace(
    recordsFile,
    /^CONFIG proxy\.config\.http\.server_ports STRING .*$/m,
    `CONFIG proxy.config.http.server_ports STRING ${port}:ip-in=127.0.0.1`,
  );
  replace(
    recordsFile,
    /^CONFIG proxy\.config\.url_remap\.remap_required INT 1$/m,
    'CONFIG proxy.config.url_remap.remap_required INT 0',
  );
  writeFileSync(
    recordsFile,
    [
      readFileSync(recordsFile, 'utf8').trimEnd(),
      `CONFIG proxy.config.hostdb.host_file.path STRING ${dir}/hosts`,
      'CONFIG proxy.config.dns.nameservers STRING 127.0.0.1',
      ...records,
      '',
    ].join('\n'),
  );
  replace(join(etc, 'storage.config'), /^\/var\/cache\/trafficserver .*$/m, `${dir}/cache 64M`);
  writeFileSync(
    join(dir, 'runroot.yaml'),
    [
      `prefix: ${dir}`,
      'exec_prefix: /usr',
      'bindir: /usr/bin',
      'sbindir: /usr/bin',
      `sysconfdir: ${etc}`,
      'datadir: /usr/share/trafficserver',
      'includedir: /usr/include',
      'libdir: /usr/lib/trafficserver',
      'libexecdir: /usr/lib/trafficserver/modules',
      `localstatedir: ${dir}/var`,
      `runtimedir: ${dir}/run`,
      `logdir: ${dir}/log`,
      `cachedir: ${dir}/cache`,
      '',
    ].join('\n'),
  );
  const user = localUser('trafficserver');
  if (user) chownTree(dir, user.uid, user.gid);
  return launch(t, 'traffic_server', dir, hosts, port, [
    '/usr/bin/traffic_server',
    `--run-root=${dir}/runroot.yaml`,
  ]);
}

/**
 * Debian's stock /etc/squid/squid.conf (its conf.d included as it is), changed only where a temp
 * dir needs it: http_port on 127.0.0.1:<port>, and at the end the pid, log and coredump paths,
 * the lab hosts file, DNS to 127.0.0.1, pinger off, a quick shutdown. Started by hand-squid.ts.
 */
export function stockSquidConf(dir: string, port: number): string {
  const stock = readFileSync('/etc/squid/squid.conf', 'utf8');
  if (!/^http_port 3128$/m.test(stock)) throw new Error('/etc/squid/squid.conf: no "http_port 3128" line');
  return [
    stock.replace(/^http_port 3128$/m, `http_port 127.0.0.1:${port}`).trimEnd(),
    `pid_filename ${dir}/run/squid.pid`,
    `cache_log ${dir}/logs/cache.log`,
    `access_log stdio:${dir}/logs/access.log`,
    `coredump_dir ${dir}/run`,
    'pinger_enable off',
    `hosts_file ${dir}/hosts`,
    'dns_nameservers 127.0.0.1',
    'shutdown_lifetime 1 seconds',
  ].join('\n');
}

/**
 * Debian's tinyproxy: /etc/tinyproxy/tinyproxy.conf copied; `Port <port>` and `Listen 127.0.0.1`
 * (the stock file listens on every address), pid and log files in the temp dir; run in the
 * foreground (-d). It drops to the tinyproxy user as the stock file says.
 */
export async function startTinyproxy(t: Test, hosts: string): Promise<DebianProxy> {
  const dir = tempDir(t, 'tinyproxy');
  const conf = join(dir, 'tinyproxy.conf');
  cpSync('/etc/tinyproxy/tinyproxy.conf', conf);
  const port = await pickPort();
  replace(conf, /^Port 8888$/m, `Port ${port}\nListen 127.0.0.1`);
  replace(conf, /^LogFile .*$/m, `LogFile "${dir}/tinyproxy.log"`);
  replace(conf, /^PidFile .*$/m, `PidFile "${dir}/tinyproxy.pid"`);
  const user = localUser('tinyproxy');
  if (user) chownTree(dir, user.uid, user.gid);
  return launch(t, 'tinyproxy', dir, hosts, port, ['/usr/bin/tinyproxy', '-d', '-c', conf]);
}

/**
 * Debian's privoxy: /etc/privoxy copied (config and action files); `listen-address
 * 127.0.0.1:<port>` only (the stock file also listens on [::1]:8118), confdir and logdir in the
 * temp dir; run in the foreground (--no-daemon).
 */
export async function startPrivoxy(t: Test, hosts: string): Promise<DebianProxy> {
  const dir = tempDir(t, 'privoxy');
  const etc = join(dir, 'etc');
  cpSync('/etc/privoxy', etc, { recursive: true, dereference: true });
  mkdirSync(join(dir, 'log'));
  const port = await pickPort();
  const conf = join(etc, 'config');
  replace(conf, /^listen-address +127\.0\.0\.1:8118$/m, `listen-address 127.0.0.1:${port}`);
  replace(conf, /^listen-address +\[::1\]:8118$/m, '');
  replace(conf, /^confdir .*$/m, `confdir ${etc}`);
  replace(conf, /^logdir .*$/m, `logdir ${dir}/log`);
  return launch(t, 'privoxy', dir, hosts, port, ['/usr/sbin/privoxy', '--no-daemon', conf]);
}
