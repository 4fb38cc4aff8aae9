/**
 * Proxy credentials, the Proxy-Authorization header and its redaction: the one place they are
 * built. A ProxyAuth strategy answers the proxy's 407 challenges round by round on one kept-alive
 * connection (Basic needs one preemptive round; connection-bound schemes such as NTLM and
 * Negotiate need several, which is why the connection must stay the same).
 */
export interface ProxyCredentials {
  username: string;
  password: string;
}

export interface ProxyAuth {
  /** The scheme this strategy speaks, as in Proxy-Authenticate (`Basic`, `Negotiate`, ...). */
  readonly scheme: string;
  /** The Proxy-Authorization value sent before any challenge, or undefined to wait for a 407. */
  preemptive(): string | undefined;
  /**
   * The value answering a 407 whose Proxy-Authenticate challenges are `challenges` (one per
   * header line), at round `round` (1 = the first 407). Undefined: the agent has nothing more to
   * offer, and the 407 stands.
   */
  answer(challenges: string[], round: number): string | undefined;
}

/** Basic: credentials sent preemptively with the first CONNECT; a 407 after that is final. */
export function basicAuth(c: ProxyCredentials): ProxyAuth {
  const value = `Basic ${Buffer.from(`${c.username}:${c.password}`).toString('base64')}`;
  return {
    scheme: 'Basic',
    preemptive: () => value,
    answer: () => undefined,
  };
}

/** The strategy an agent with these credentials uses (none without credentials). */
export function proxyAuthFor(credentials: ProxyCredentials | undefined): ProxyAuth | undefined {
  return credentials ? basicAuth(credentials) : undefined;
}

/** A request head with every Proxy-Authorization value replaced by `<scheme> <redacted>`. */
export function redactAuthorization(head: string): string {
  return head.replace(/^(Proxy-Authorization: *)(\S+)(?: +\S+)?$/gim, '$1$2 <redacted>');
}
