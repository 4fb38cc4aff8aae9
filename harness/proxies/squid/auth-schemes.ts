/**
 * squid's enterprise authentication schemes (definition `auth: digest | ntlm | negotiate`):
 *
 *  - digest:    `digest_file_auth` reading `user:password` lines written per run;
 *  - ntlm:      `ntlm_fake_auth`, which ACCEPTS ANY CREDENTIALS: it shows the NTLM handshake (type
 *               1, 2, 3 on one connection), never that a password was checked;
 *  - negotiate: `negotiate_kerberos_auth` with a keytab for `HTTP/127.0.0.1` from the lab Kerberos
 *               realm (harness/lab/kdc.ts), one per process, shared by every negotiate proxy: started
 *               with the first and stopped with the last; the agent's ticket comes from `kinit`
 *               into a credential cache of the realm.
 *
 * What squid.ts prepares (files, the realm, the agent's credentials) and the auth_param lines
 * config.ts writes for them.
 */
import { chmodSync, chownSync, copyFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type KerberosRealm, LAB_REALM, startRealm } from '../../lab/kdc.ts';
import { RUN_DIR_PREFIX, RunDir } from '../../lab/rundir.ts';
import type { ProxyCredentials } from '../../route/auth.ts';
import { localUser } from '../toolkit/process.ts';

export type EnterpriseScheme = 'digest' | 'ntlm' | 'negotiate';
export const ENTERPRISE_SCHEMES: readonly string[] = ['digest', 'ntlm', 'negotiate'];

/** The service principal squid accepts: the proxy URL's host is 127.0.0.1. */
export const PROXY_SPN_HOST = '127.0.0.1';
export const PROXY_PRINCIPAL = `HTTP/${PROXY_SPN_HOST}@${LAB_REALM}`;
export const AGENT_PRINCIPAL = `agent@${LAB_REALM}`;

export interface PreparedAuth {
  credentials: ProxyCredentials;
  /** The helper's arguments after its program, with `etcAs` standing for the etc directory as squid sees it. */
  helperArgs(etcAs: string): string;
  stop(): Promise<void>;
}

export const HELPER: Record<EnterpriseScheme, string> = {
  digest: 'digest_file_auth',
  ntlm: 'ntlm_fake_auth',
  negotiate: 'negotiate_kerberos_auth',
};

/** Files for `scheme` in `etcDir`, and for negotiate a hold on the shared lab realm until stop(). */
export async function prepareAuth(
  scheme: EnterpriseScheme,
  etcDir: string,
  password: string,
): Promise<PreparedAuth> {
  const nothing = async () => {};
  if (scheme === 'digest') {
    // read by digest_file_auth as squid's unprivileged user
    writeFileSync(join(etcDir, 'digest-passwd'), `agent:${password}\n`, { mode: 0o644 });
    return {
      credentials: { username: 'agent', password, scheme },
      helperArgs: (etcAs) => `${etcAs}/digest-passwd`,
      stop: nothing,
    };
  }
  if (scheme === 'ntlm')
    return {
      credentials: { username: 'agent', password, scheme, domain: 'PROXYCHECK' },
      helperArgs: () => '',
      stop: nothing,
    };
  const shared = await acquireRealm();
  try {
    // each squid reads its own copy of the service keytab, as squid's user
    const keytab = join(etcDir, 'http.keytab');
    copyFileSync(shared.serviceKeytab, keytab);
    const proxy = process.getuid?.() === 0 ? localUser('proxy') : undefined;
    if (proxy) chownSync(keytab, proxy.uid, proxy.gid);
  } catch (err) {
    await releaseRealm();
    throw err;
  }
  let released = false;
  return {
    credentials: { username: AGENT_PRINCIPAL, password: '', scheme, spnHost: PROXY_SPN_HOST },
    helperArgs: (etcAs) => `-k ${etcAs}/http.keytab -s ${PROXY_PRINCIPAL}`,
    stop: async () => {
      if (released) return;
      released = true;
      await releaseRealm();
    },
  };
}

interface SharedRealm {
  realm: KerberosRealm;
  /** The keys of HTTP/127.0.0.1, which every negotiate squid accepts tickets for. */
  serviceKeytab: string;
}

/**
 * The lab realm every negotiate proxy of this process shares: the agent's Kerberos environment is
 * process-wide (KRB5_CONFIG, KRB5CCNAME), so one realm serves all, with one service principal and
 * one agent ticket. The first proxy starts it, the last one to stop stops it; proxies that start
 * side by side wait for the same start. Its directory is a run directory of its own (swept when
 * this process dies without removing it).
 */
let shared: { users: number; ready: Promise<SharedRealm>; dir: RunDir } | undefined;

async function acquireRealm(): Promise<SharedRealm> {
  if (!shared) {
    const dir = new RunDir(`${RUN_DIR_PREFIX}kdc-`);
    // squid's helpers run as squid's user and inherit KRB5_CONFIG (useForAgent): they must pass
    // through to the realm's krb5.conf (0644); the KDC's database, stash, keytabs and the agent's
    // ticket cache stay 0600
    chmodSync(dir.path, 0o711);
    const ready = (async () => {
      const realm = await startRealm(join(dir.path, 'kdc'));
      try {
        const serviceKeytab = join(dir.path, 'http.keytab');
        await realm.principal(`HTTP/${PROXY_SPN_HOST}`, serviceKeytab);
        const agentKeytab = join(realm.dir, 'agent.keytab');
        await realm.principal(AGENT_PRINCIPAL, agentKeytab);
        const ccache = `FILE:${join(realm.dir, 'agent.ccache')}`;
        await realm.kinit(AGENT_PRINCIPAL, agentKeytab, ccache);
        realm.useForAgent(ccache);
        return { realm, serviceKeytab };
      } catch (err) {
        await realm.stop();
        throw err;
      }
    })();
    shared = { users: 0, ready, dir };
    const mine = shared;
    ready.catch(() => {
      // a failed start is not shared: the next proxy tries again
      if (shared === mine) shared = undefined;
      dir.remove();
    });
  }
  const s = shared;
  s.users += 1;
  try {
    return await s.ready;
  } catch (err) {
    s.users -= 1;
    throw err;
  }
}

async function releaseRealm(): Promise<void> {
  const s = shared;
  if (!s) return;
  s.users -= 1;
  if (s.users > 0) return;
  shared = undefined;
  try {
    await (await s.ready).realm.stop();
  } finally {
    s.dir.remove();
  }
}

/**
 * The auth_param block and http_access lines of `auth` (its helper program given in full), or
 * plain localhost access without auth.
 */
export function authAccessLines(
  auth: 'none' | 'basic' | 'loop' | EnterpriseScheme,
  program: string,
): string[] {
  if (auth === 'none') return ['http_access allow localhost', 'http_access deny all'];
  const scheme = auth === 'loop' ? 'basic' : auth;
  const lines = [
    '',
    ...(auth === 'loop'
      ? ['# auth loop: Basic credentials asked for, every one rejected (the helper answers ERR to each)']
      : []),
    `auth_param ${scheme} program ${program}`,
    `auth_param ${scheme} children 2 startup=1 idle=1`,
  ];
  if (scheme === 'basic')
    lines.push('auth_param basic realm proxycheck', 'auth_param basic credentialsttl 1 minute');
  else if (scheme === 'digest') lines.push('auth_param digest realm proxycheck');
  else lines.push(`auth_param ${scheme} keep_alive on`);
  lines.push('acl authed proxy_auth REQUIRED', 'http_access allow localhost authed', 'http_access deny all');
  return lines;
}

/**
 * Auth `loop`'s basic helper: squid writes one `user password` line per check (concurrency 0, the
 * default: no channel ID) and reads one answer line, OK or ERR; this answers ERR to each. `read -r`
 * keeps backslashes; dash's echo is a builtin writing straight to the pipe, so nothing is buffered.
 * Written with mode 0755 next to squid.conf (squid.ts), which works for both runtimes: the
 * container gets that directory bind-mounted and runs it with the image's /bin/sh.
 */
export const AUTH_LOOP_HELPER = [
  '#!/bin/sh',
  '# proxycheck auth loop: every credential is rejected',
  'while read -r line; do echo ERR; done',
  '',
].join('\n');
/** Its file name in the instance's etc directory. */
export const AUTH_LOOP_HELPER_FILE = 'auth-loop-helper';
