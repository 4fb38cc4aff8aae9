/**
 * A lab Kerberos realm: a real MIT KDC from Debian (krb5-kdc) started per run on loopback, after
 * k5test's realm recipe (REFERENCES §3): kdc.conf and krb5.conf in a private directory of the run
 * directory, `kdb5_util create`, principals with `kadmin.local`, `krb5kdc -n` listening on
 * 127.0.0.1 only (kdc_listen / kdc_tcp_listen) on a picked port, and stopped with the run.
 *
 * The realm's users are given keytabs (`ktadd -norandkey`), so a ticket is had with
 * `kinit -k -t` and no password goes through a pipe. The agent side (this process: the
 * `kerberos` package reads the environment) is pointed at the realm with KRB5_CONFIG and
 * KRB5CCNAME while the realm is up (`useForAgent`), and given back what it had at the end.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { SetupError } from '../errors.ts';
import { runCommand } from '../proxies/toolkit/command.ts';
import { pickPort } from '../proxies/toolkit/ports.ts';
import { launchProcess, which } from '../proxies/toolkit/process.ts';
import { waitForListening } from '../proxies/toolkit/ready.ts';

export const LAB_REALM = 'PROXYCHECK.TEST';
/** The realm directory whose realm the agent (this process) uses now. */
let agentRealm: string | undefined;
const READY_MS = 15_000;
const COMMAND_MS = 20_000;
const SBIN = ['/usr/sbin', '/usr/bin'];

export interface KerberosRealm {
  realm: string;
  kdcPort: number;
  dir: string;
  /** KRB5_CONFIG and KRB5_KDC_PROFILE of this realm (for its tools, squid's helper, kinit). */
  env: NodeJS.ProcessEnv;
  /** Adds a principal with a random key and writes its keys to `keytab` (a user or a service). */
  principal(name: string, keytab: string): Promise<void>;
  /** A ticket for `name` from its keytab, into the credential cache `ccache` (`FILE:` path). */
  kinit(name: string, keytab: string, ccache: string): Promise<void>;
  /** Points this process's Kerberos client at the realm and the cache until stop(). */
  useForAgent(ccache: string): void;
  stop(): Promise<void>;
}

function tool(name: string): string {
  const found = which(name) ?? SBIN.map((d) => join(d, name)).find((p) => existsSync(p));
  if (!found)
    throw new SetupError(
      `the lab Kerberos realm needs ${name}, which is not installed (apt-get install krb5-kdc krb5-admin-server krb5-user)`,
    );
  return found;
}

/** What is missing for a lab realm here, or undefined when it can be had. */
export function realmProblem(): string | undefined {
  try {
    for (const t of ['krb5kdc', 'kdb5_util', 'kadmin.local', 'kinit']) tool(t);
    return undefined;
  } catch (err) {
    return (err as Error).message;
  }
}

export async function startRealm(dir: string, realm = LAB_REALM): Promise<KerberosRealm> {
  const krb5kdc = tool('krb5kdc');
  const kdb5 = tool('kdb5_util');
  const kadmin = tool('kadmin.local');
  const kinitBin = tool('kinit');
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  const port = await pickPort();
  const at = `127.0.0.1:${port}`;
  writeFileSync(
    join(dir, 'kdc.conf'),
    [
      '[kdcdefaults]',
      ` kdc_listen = ${at}`,
      ` kdc_tcp_listen = ${at}`,
      '[realms]',
      ` ${realm} = {`,
      `  database_name = ${dir}/principal`,
      `  key_stash_file = ${dir}/stash`,
      `  acl_file = ${dir}/kadm5.acl`,
      `  kdc_listen = ${at}`,
      `  kdc_tcp_listen = ${at}`,
      ' }',
      '[logging]',
      ' kdc = STDERR',
      '',
    ].join('\n'),
  );
  writeFileSync(
    join(dir, 'krb5.conf'),
    [
      '[libdefaults]',
      ` default_realm = ${realm}`,
      ' dns_lookup_kdc = false',
      ' dns_lookup_realm = false',
      ' rdns = false',
      ' dns_canonicalize_hostname = false',
      '[realms]',
      ` ${realm} = {`,
      `  kdc = ${at}`,
      ' }',
      '',
    ].join('\n'),
    { mode: 0o644 },
  );
  writeFileSync(join(dir, 'kadm5.acl'), '');
  const env = {
    ...process.env,
    KRB5_CONFIG: join(dir, 'krb5.conf'),
    KRB5_KDC_PROFILE: join(dir, 'kdc.conf'),
  };
  const run = async (cmd: string, args: string[], what: string) => {
    const r = await runCommand(cmd, args, { what, timeoutMs: COMMAND_MS, env });
    if (r.code !== 0)
      throw new SetupError(
        `lab Kerberos realm: ${what} failed (exit ${r.code}): ${(r.stderr || r.stdout).trim().split('\n').pop()}`,
      );
  };
  const master = randomBytes(18).toString('base64url');
  await run(kdb5, ['-r', realm, 'create', '-s', '-W', '-P', master], 'kdb5_util create');
  const kdc = launchProcess({
    what: `lab KDC ${realm} (${at})`,
    cmd: krb5kdc,
    args: ['-n', '-r', realm, '-P', join(dir, 'kdc.pid')],
    cleanupName: (pid) => `lab KDC (pid ${pid})`,
    env,
  });
  try {
    await kdc.ready(/starting\.\.\./, {
      awaiting: 'readiness ("krb5kdc: starting...")',
      deadlineMs: READY_MS,
      problem: () => kdc.output().trim().split('\n').pop() ?? '',
    });
    await waitForListening(port, READY_MS, `lab KDC ${realm} port ${port}`);
  } catch (err) {
    await kdc.stop();
    throw err;
  }
  const saved: Record<string, string | undefined> = {};
  return {
    realm,
    kdcPort: port,
    dir,
    env: { KRB5_CONFIG: env.KRB5_CONFIG, KRB5_KDC_PROFILE: env.KRB5_KDC_PROFILE },
    async principal(name, keytab) {
      await run(kadmin, ['-r', realm, '-q', `addprinc -randkey ${name}`], `kadmin.local addprinc ${name}`);
      await run(
        kadmin,
        ['-r', realm, '-q', `ktadd -k ${keytab} -norandkey ${name}`],
        `kadmin.local ktadd ${name}`,
      );
    },
    async kinit(name, keytab, ccache) {
      await run(kinitBin, ['-k', '-t', keytab, '-c', ccache, name], `kinit ${name}`);
    },
    useForAgent(ccache) {
      // the Kerberos client reads the process environment: one realm points the agent at a time
      if (agentRealm && agentRealm !== dir)
        throw new SetupError(
          `lab Kerberos realm ${dir}: the agent already uses the realm in ${agentRealm} (the Kerberos environment is process-wide: one realm at a time)`,
        );
      agentRealm = dir;
      for (const k of ['KRB5_CONFIG', 'KRB5CCNAME']) saved[k] ??= process.env[k] ?? '';
      process.env.KRB5_CONFIG = env.KRB5_CONFIG;
      process.env.KRB5CCNAME = ccache;
    },
    async stop() {
      if (agentRealm === dir) agentRealm = undefined;
      for (const [k, v] of Object.entries(saved)) {
        if (v) process.env[k] = v;
        else delete process.env[k];
      }
      await kdc.stop();
    },
  };
}
