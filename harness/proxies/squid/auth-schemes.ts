/**
 * squid's enterprise authentication schemes (definition `auth: digest | ntlm | negotiate`):
 *
 *  - digest:    `digest_file_auth` reading `user:password` lines written per run;
 *  - ntlm:      `ntlm_fake_auth`, which ACCEPTS ANY CREDENTIALS: it shows the NTLM handshake (type
 *               1, 2, 3 on one connection), never that a password was checked;
 *  - negotiate: `negotiate_kerberos_auth` with a keytab for `HTTP/127.0.0.1` from a lab Kerberos
 *               realm (harness/lab/kdc.ts) started for this proxy and stopped with it; the agent's
 *               ticket comes from `kinit` into a credential cache of the run.
 *
 * What squid.ts prepares (files, the realm, the agent's credentials) and the auth_param lines
 * config.ts writes for them.
 */
import { chownSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { LAB_REALM, startRealm } from '../../lab/kdc.ts';
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

/** Files (and for negotiate the realm) for `scheme`, in `etcDir`; `dir` holds the realm. */
export async function prepareAuth(
  scheme: EnterpriseScheme,
  etcDir: string,
  dir: string,
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
  const realm = await startRealm(join(dir, 'kdc'));
  try {
    const keytab = join(etcDir, 'http.keytab');
    await realm.principal(`HTTP/${PROXY_SPN_HOST}`, keytab);
    // the keytab is read by squid's helper, which runs as squid's user
    const proxy = process.getuid?.() === 0 ? localUser('proxy') : undefined;
    if (proxy) chownSync(keytab, proxy.uid, proxy.gid);
    const agentKeytab = join(realm.dir, 'agent.keytab');
    await realm.principal(AGENT_PRINCIPAL, agentKeytab);
    const ccache = `FILE:${join(realm.dir, 'agent.ccache')}`;
    await realm.kinit(AGENT_PRINCIPAL, agentKeytab, ccache);
    realm.useForAgent(ccache);
  } catch (err) {
    await realm.stop();
    throw err;
  }
  return {
    credentials: { username: AGENT_PRINCIPAL, password: '', scheme, spnHost: PROXY_SPN_HOST },
    helperArgs: (etcAs) => `-k ${etcAs}/http.keytab -s ${PROXY_PRINCIPAL}`,
    stop: () => realm.stop(),
  };
}

/** The auth_param block of one scheme (its helper program given in full). */
export function authParamLines(scheme: EnterpriseScheme, program: string): string[] {
  const lines = [
    `auth_param ${scheme} program ${program}`,
    `auth_param ${scheme} children 2 startup=1 idle=1`,
  ];
  if (scheme === 'digest') lines.push('auth_param digest realm proxycheck');
  else lines.push(`auth_param ${scheme} keep_alive on`);
  return lines;
}
