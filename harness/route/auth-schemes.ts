/**
 * The connection-bound schemes, from kept libraries: NTLM (httpntlm's message code: type 1, the
 * proxy's type 2, type 3 with NTLMv2 when the proxy offers target info) and Negotiate (the
 * `kerberos` package: GSSAPI with the SPNEGO mechanism, loaded lazily so a machine without it runs
 * everything else and says in one line why Negotiate is unavailable). The credentials of
 * Negotiate are the user's Kerberos tickets (KRB5CCNAME), not a password.
 */
import { createRequire } from 'node:module';
import type { AuthHandshake, AuthRequest, ProxyCredentials } from './auth.ts';

const require = createRequire(import.meta.url);

interface NtlmModule {
  createType1Message(o: { domain: string; workstation: string }): string;
  parseType2Message(raw: string, cb: (err: Error) => void): unknown;
  createType3Message(type2: unknown, o: Record<string, string>): string;
}

const tokenOf = (challenges: string[], scheme: string): string | undefined => {
  for (const c of challenges) {
    const m = new RegExp(`^${scheme}(?:\\s+(\\S+))?\\s*$`, 'i').exec(c.trim());
    if (m) return m[1] ?? '';
  }
  return undefined;
};

/** NTLM: type 1 on the first 407, type 3 on the proxy's type 2; another 407 after type 3 is a rejection. */
export function ntlmHandshake(c: ProxyCredentials): AuthHandshake {
  const ntlm = require('httpntlm').ntlm as NtlmModule;
  const o = { username: c.username, password: c.password, domain: c.domain ?? '', workstation: 'PROXYCHECK' };
  let sent: 'none' | 'type1' | 'type3' = 'none';
  const hs: AuthHandshake = {
    preemptive: () => undefined,
    answer(challenges) {
      const token = tokenOf(challenges, 'NTLM');
      if (token === undefined) return undefined;
      if (sent === 'none' || (sent === 'type3' && token === '')) {
        if (sent === 'type3') return undefined; // type 3 rejected: a fresh "NTLM" offer
        sent = 'type1';
        return ntlm.createType1Message(o);
      }
      if (sent === 'type1' && token) {
        let bad: Error | undefined;
        const type2 = ntlm.parseType2Message(`NTLM ${token}`, (err) => {
          bad = err;
        });
        if (!type2 || bad) {
          hs.refusal = `the proxy's NTLM challenge is not a type 2 message (${bad?.message ?? 'unreadable'})`;
          return undefined;
        }
        sent = 'type3';
        return ntlm.createType3Message(type2, o);
      }
      return undefined;
    },
  };
  return hs;
}

interface KerberosClient {
  step(challenge: string): Promise<string>;
  contextComplete: boolean;
}
interface KerberosModule {
  GSS_MECH_OID_SPNEGO: number;
  initializeClient(service: string, o: { mechOID: number }): Promise<KerberosClient>;
}

let kerberos: Promise<KerberosModule | string> | undefined;

/** The `kerberos` package, or one line saying why it cannot be had here. */
export function loadKerberos(): Promise<KerberosModule | string> {
  const name = 'kerberos'; // optional: not resolved at type-check time
  kerberos ??= import(name).then(
    (m) => ((m as { default?: KerberosModule }).default ?? m) as KerberosModule,
    (err: Error) =>
      `Negotiate is unavailable: the kerberos package cannot be loaded (${err.message.split('\n')[0]}); install it with npm (it builds with libkrb5-dev, python3 and g++)`,
  );
  return kerberos;
}

/**
 * Negotiate (RFC 4559): a SPNEGO token for `HTTP@<proxy host>` from the user's ticket cache on the
 * first 407; the proxy's answer token, if any, is stepped in; a 407 after the context is complete is
 * a rejection of the principal.
 */
export function negotiateHandshake(c: ProxyCredentials, req: AuthRequest): AuthHandshake {
  let client: KerberosClient | undefined;
  const hs: AuthHandshake = {
    preemptive: () => undefined,
    async answer(challenges) {
      const token = tokenOf(challenges, 'Negotiate');
      if (token === undefined) return undefined;
      if (client && !token) return undefined; // our token was not accepted
      if (!client) {
        const k = await loadKerberos();
        if (typeof k === 'string') {
          hs.refusal = k;
          return undefined;
        }
        const service = `HTTP@${c.spnHost ?? req.proxyHost}`;
        try {
          client = await k.initializeClient(service, { mechOID: k.GSS_MECH_OID_SPNEGO });
          return `Negotiate ${await client.step('')}`;
        } catch (err) {
          hs.refusal = `Negotiate: the agent has no Kerberos ticket for ${service} (${(err as Error).message})`;
          return undefined;
        }
      }
      try {
        const next = await client.step(token);
        return next ? `Negotiate ${next}` : undefined;
      } catch (err) {
        hs.refusal = `Negotiate: the proxy's answer token was not accepted (${(err as Error).message})`;
        return undefined;
      }
    },
  };
  return hs;
}
