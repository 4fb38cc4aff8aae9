/**
 * `validate --proxy-auth basic|digest|ntlm|negotiate`: the agent's credentials for the proxy under
 * validation. basic, digest and ntlm take --proxy-user (`DOMAIN\user` gives NTLM its domain) and a
 * password; negotiate takes the user's Kerberos tickets: the ticket cache (KRB5CCNAME honoured, as
 * every Kerberos client does) or `--proxy-keytab FILE` (the client keytab, KRB5_CLIENT_KTNAME), and
 * no password. Secrets are never printed.
 */
import { accessSync, constants } from 'node:fs';
import { UsageError } from '../errors.ts';
import { AUTH_SCHEMES, type AuthSchemeName, type ProxyCredentials } from '../route/auth.ts';

export interface ProxyAuthOptions {
  proxyAuth?: string;
  proxyKeytab?: string;
  proxyUser?: string;
}

/**
 * The credentials these options give, or undefined to leave them as the user and password alone
 * say (Basic). `password` is --proxy-password or the environment's; `fromUrl` those in the URL.
 */
export function proxyAuthCredentials(
  o: ProxyAuthOptions,
  password: string | undefined,
  fromUrl: ProxyCredentials | undefined,
): ProxyCredentials | undefined {
  if (o.proxyAuth === undefined) {
    if (o.proxyKeytab) throw new UsageError('--proxy-keytab is for --proxy-auth negotiate');
    return undefined;
  }
  const scheme = o.proxyAuth.toLowerCase() as AuthSchemeName;
  if (!AUTH_SCHEMES.includes(scheme))
    throw new UsageError(`--proxy-auth ${o.proxyAuth}: not a scheme (basic, digest, ntlm or negotiate)`);
  if (scheme === 'negotiate') {
    if (password !== undefined || fromUrl?.password)
      throw new UsageError(
        '--proxy-auth negotiate takes no password: it uses your Kerberos ticket cache (KRB5CCNAME) or --proxy-keytab',
      );
    if (o.proxyKeytab) {
      try {
        accessSync(o.proxyKeytab, constants.R_OK);
      } catch (err) {
        throw new UsageError(
          `--proxy-keytab ${o.proxyKeytab}: ${(err as NodeJS.ErrnoException).code ?? 'unreadable'}`,
        );
      }
      // MIT Kerberos gets the initial ticket from the client keytab when the cache has none
      process.env.KRB5_CLIENT_KTNAME = o.proxyKeytab;
    }
    return { username: o.proxyUser ?? fromUrl?.username ?? '', password: '', scheme };
  }
  if (o.proxyKeytab) throw new UsageError('--proxy-keytab is for --proxy-auth negotiate');
  const user = o.proxyUser ?? fromUrl?.username;
  if (!user) throw new UsageError(`--proxy-auth ${scheme} needs --proxy-user (or a user in the proxy URL)`);
  const [domain, name] = user.includes('\\') ? (user.split('\\', 2) as [string, string]) : [undefined, user];
  return {
    username: name,
    password: password ?? fromUrl?.password ?? '',
    scheme,
    ...(domain ? { domain } : {}),
  };
}
