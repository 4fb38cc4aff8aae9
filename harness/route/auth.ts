/**
 * Proxy credentials, the Proxy-Authorization header and its redaction: the one place they are
 * built. A ProxyAuth strategy answers the proxy's 407 challenges round by round on one kept-alive
 * connection (Basic needs one preemptive round; connection-bound schemes such as NTLM and
 * Negotiate need several, which is why the connection must stay the same).
 *
 * The agent's scheme choice is explicit (`agentAuth`): of the schemes the proxy offers in its
 * Proxy-Authenticate lines, the agent takes the first of its own list (strongest first, as curl's
 * --proxy-anyauth does: Negotiate, NTLM, Digest, Basic); when it can do none of them it says so
 * (`refusal`), naming what was offered and what it speaks. Digest is RFC 7616 (qop=auth, nc,
 * cnonce; MD5 or SHA-256) on Node's crypto; NTLM and Negotiate are in auth-schemes.ts (httpntlm's
 * message code, the `kerberos` package for GSSAPI).
 */
import { createHash, randomBytes } from 'node:crypto';
import { negotiateHandshake, ntlmHandshake } from './auth-schemes.ts';

/** Rounds after which the proxy is said to challenge forever (NTLM needs 2, Digest 1 or 2 with a stale nonce). */
export const MAX_AUTH_ROUNDS = 5;

export type AuthSchemeName = 'basic' | 'digest' | 'ntlm' | 'negotiate';
/** Strongest first: the order the agent prefers when a proxy offers several. */
export const AUTH_SCHEMES: AuthSchemeName[] = ['negotiate', 'ntlm', 'digest', 'basic'];
/** As written in Proxy-Authenticate. */
export const SCHEME_TOKEN: Record<AuthSchemeName, string> = {
  basic: 'Basic',
  digest: 'Digest',
  ntlm: 'NTLM',
  negotiate: 'Negotiate',
};

export interface ProxyCredentials {
  username: string;
  password: string;
  /** The scheme the agent is configured for (default basic); absent: Basic, preemptively. */
  scheme?: AuthSchemeName;
  /** NTLM: the user's domain. */
  domain?: string;
  /** Negotiate: the host of the proxy's service principal (`HTTP/<host>`; default the proxy host). */
  spnHost?: string;
}

/** What the agent is doing on one connection: the request it authenticates. */
export interface AuthRequest {
  method: string;
  /** CONNECT: the authority `host:port`. */
  uri: string;
  /** The proxy's host as the agent names it (Negotiate's service principal is `HTTP@<host>`). */
  proxyHost: string;
}

/** One connection's handshake: state kept from round to round (a Digest nc, an NTLM type 1). */
export interface AuthHandshake {
  /** The Proxy-Authorization value sent before any challenge, or undefined to wait for a 407. */
  preemptive(): string | undefined;
  /**
   * The value answering a 407 whose Proxy-Authenticate challenges are `challenges` (one per
   * header line), at round `round` (1 = the first 407). Undefined: the agent has nothing more to
   * offer, and the 407 stands (`refusal` then says why, when it is not a rejection).
   */
  answer(challenges: string[], round: number): string | undefined | Promise<string | undefined>;
  /** Why the last `answer` gave nothing: the agent cannot do what the proxy offers. */
  refusal?: string;
}

export interface ProxyAuth {
  /** What the agent speaks, as in Proxy-Authenticate (`Basic`, `Negotiate`, `Negotiate NTLM`). */
  readonly scheme: string;
  /** A new handshake for one connection. */
  start(req: AuthRequest): AuthHandshake;
}

/** One 407 the agent answered on the same connection (multi-round proxy authentication). */
export interface AuthRound {
  round: number;
  statusLine: string;
  challenges: string[];
  /** The scheme of the value the agent answered with. */
  answeredWith: string;
}

/** The proxy-authentication dance on one CONNECT (recorded by agent/tunnel.ts), for the `proxy-auth` check. */
export interface AuthDance {
  /** The schemes the agent speaks (strongest first). */
  agentSpeaks: string;
  /** The schemes the proxy offered in its last 407 (none: it never asked). */
  offered: string[];
  /** The scheme the agent answered with (or sent preemptively). */
  used?: string;
  /** Requests that carried credentials. */
  rounds: number;
  /**
   * Every round went over the one connection the dance began on (the agent never starts over on a
   * new one): false when the proxy closed it or said it would.
   */
  connectionKept: boolean;
  /** How the proxy broke the connection the dance needed. */
  closedBetweenRounds?: string;
  /** Why the agent could not answer (a scheme it does not speak, no Kerberos ticket, ...). */
  agentCannot?: string;
}

/** A Proxy-Authenticate challenge: its scheme, its auth-params, or its token (NTLM, Negotiate). */
export interface Challenge {
  scheme: string;
  params: Record<string, string>;
  token?: string;
}

/**
 * Challenges from Proxy-Authenticate values (RFC 9110 §11.6.1): several per line are allowed,
 * comma-separated, as are quoted auth-param values with commas inside.
 */
export function parseChallenges(values: string[]): Challenge[] {
  const out: Challenge[] = [];
  const unquote = (v: string) => (v.startsWith('"') ? v.slice(1, -1).replace(/\\(.)/g, '$1') : v);
  const param = /^([!#$%&'*+.^_`|~\w-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^\s"]*)$/s;
  for (const value of values) {
    let current: Challenge | undefined;
    // comma-separated elements, commas inside quoted strings kept
    for (const el of value.match(/(?:"(?:[^"\\]|\\.)*"|[^,"])+/g) ?? []) {
      const e = el.trim();
      if (!e) continue;
      const p = param.exec(e);
      if (p?.[1] && p[2] !== undefined && current) {
        current.params[p[1].toLowerCase()] = unquote(p[2]);
        continue;
      }
      const m = /^([!#$%&'*+.^_`|~\w-]+)(?:\s+(.+))?$/s.exec(e);
      if (!m?.[1]) continue;
      current = { scheme: m[1], params: {} };
      out.push(current);
      const rest = m[2]?.trim();
      if (!rest) continue;
      const first = /^[A-Za-z0-9\-._~+/]+=*$/.test(rest) ? null : param.exec(rest);
      if (first?.[1] && first[2] !== undefined) current.params[first[1].toLowerCase()] = unquote(first[2]);
      else current.token = rest;
    }
  }
  return out;
}

/** The scheme names offered, as written (`Negotiate`, `NTLM`, `Basic`), once each. */
export function offeredSchemes(values: string[]): string[] {
  return [...new Set(parseChallenges(values).map((c) => c.scheme))];
}

function find(challenges: string[], scheme: AuthSchemeName): Challenge | undefined {
  return parseChallenges(challenges).find((c) => c.scheme.toLowerCase() === scheme);
}

/** Basic: credentials sent preemptively with the first CONNECT; a 407 after that is final. */
export function basicAuth(c: ProxyCredentials): ProxyAuth {
  const value = `Basic ${Buffer.from(`${c.username}:${c.password}`).toString('base64')}`;
  return { scheme: 'Basic', start: () => ({ preemptive: () => value, answer: () => undefined }) };
}

function digestHandshake(c: ProxyCredentials, req: AuthRequest): AuthHandshake {
  let lastNonce: string | undefined;
  let nc = 0;
  const hs: AuthHandshake = {
    preemptive: () => undefined,
    answer(challenges) {
      const ch = find(challenges, 'digest');
      if (!ch?.params.nonce) return undefined;
      const p = ch.params;
      // the same nonce again without stale=true: the answer was rejected
      if (lastNonce !== undefined && p.stale?.toLowerCase() !== 'true') return undefined;
      const algorithm = (p.algorithm ?? 'MD5').toUpperCase();
      const hashName = algorithm.startsWith('SHA-256') ? 'sha256' : algorithm.startsWith('MD5') ? 'md5' : '';
      if (!hashName) {
        hs.refusal = `the proxy's Digest algorithm ${p.algorithm} is one the agent does not speak (MD5, SHA-256)`;
        return undefined;
      }
      const h = (s: string) => createHash(hashName).update(s).digest('hex');
      const nonce = p.nonce as string;
      nc = nonce === lastNonce ? nc + 1 : 1;
      lastNonce = nonce;
      const realm = p.realm ?? '';
      const cnonce = randomBytes(8).toString('hex');
      let ha1 = h(`${c.username}:${realm}:${c.password}`);
      if (algorithm.endsWith('-SESS')) ha1 = h(`${ha1}:${nonce}:${cnonce}`);
      const ha2 = h(`${req.method}:${req.uri}`);
      const qops = (p.qop ?? '').split(',').map((q) => q.trim());
      const ncHex = nc.toString(16).padStart(8, '0');
      const withQop = qops.includes('auth');
      const response = withQop
        ? h(`${ha1}:${nonce}:${ncHex}:${cnonce}:auth:${ha2}`)
        : h(`${ha1}:${nonce}:${ha2}`);
      const q = (s: string) => `"${s.replace(/(["\\])/g, '\\$1')}"`;
      const parts = [
        `username=${q(c.username)}`,
        `realm=${q(realm)}`,
        `nonce=${q(nonce)}`,
        `uri=${q(req.uri)}`,
        ...(p.algorithm ? [`algorithm=${p.algorithm}`] : []),
        `response=${q(response)}`,
        ...(p.opaque !== undefined ? [`opaque=${q(p.opaque)}`] : []),
        ...(withQop ? ['qop=auth', `nc=${ncHex}`, `cnonce=${q(cnonce)}`] : []),
      ];
      return `Digest ${parts.join(', ')}`;
    },
  };
  return hs;
}

/** Digest (RFC 7616): answers the proxy's challenge; the same nonce again (not stale) is a rejection. */
export function digestAuth(c: ProxyCredentials): ProxyAuth {
  return { scheme: 'Digest', start: (req) => digestHandshake(c, req) };
}

function handshakeFor(scheme: AuthSchemeName, c: ProxyCredentials, req: AuthRequest): AuthHandshake {
  switch (scheme) {
    case 'basic':
      return basicAuth(c).start(req);
    case 'digest':
      return digestHandshake(c, req);
    case 'ntlm':
      return ntlmHandshake(c);
    case 'negotiate':
      return negotiateHandshake(c, req);
  }
}

/**
 * The agent: it speaks `schemes` (strongest first) with these credentials. Basic alone goes
 * preemptively; otherwise the agent waits for the 407, takes the first of its schemes the proxy
 * offers and keeps to it for the rest of the connection.
 */
export function agentAuth(c: ProxyCredentials, schemes: AuthSchemeName[]): ProxyAuth {
  const speaks = AUTH_SCHEMES.filter((s) => schemes.includes(s));
  return {
    scheme: speaks.map((s) => SCHEME_TOKEN[s]).join(' '),
    start(req) {
      // Basic alone is sent before any challenge; every other scheme waits for the proxy's offer
      let chosenName: AuthSchemeName | undefined =
        speaks.length === 1 && speaks[0] === 'basic' ? 'basic' : undefined;
      let chosen = chosenName ? basicAuth(c).start(req) : undefined;
      const self: AuthHandshake = {
        preemptive: () => chosen?.preemptive(),
        async answer(challenges, round) {
          const offered = parseChallenges(challenges).map((x) => x.scheme.toLowerCase());
          const pick = chosenName ?? speaks.find((s) => offered.includes(s));
          if (!pick || !offered.includes(pick)) {
            self.refusal = `the proxy offers ${offeredSchemes(challenges).join(', ') || 'no scheme'}; the agent speaks ${speaks.map((s) => SCHEME_TOKEN[s]).join(', ')}`;
            return undefined;
          }
          if (!chosen) {
            chosenName = pick;
            chosen = handshakeFor(pick, c, req);
          }
          const v = await chosen.answer(challenges, round);
          if (v === undefined && chosen.refusal) self.refusal = chosen.refusal;
          return v;
        },
      };
      return self;
    },
  };
}

/** The strategy an agent with these credentials uses (none without credentials). */
export function proxyAuthFor(credentials: ProxyCredentials | undefined): ProxyAuth | undefined {
  return credentials ? agentAuth(credentials, [credentials.scheme ?? 'basic']) : undefined;
}

/** A request head with every Proxy-Authorization value replaced by `<scheme> <redacted>`. */
export function redactAuthorization(head: string): string {
  return head.replace(/^(Proxy-Authorization: *)(\S+)(?: +.+)?$/gim, '$1$2 <redacted>');
}

/** A proxy's answer head with the tokens and nonces of its Proxy-Authenticate lines redacted. */
export function redactChallengeHead(head: string): string {
  return head.replace(
    /^(Proxy-Authenticate: *)(.*)$/gim,
    (_m, name: string, value: string) => `${name}${redactChallenges([value])[0]}`,
  );
}

/** Challenges for evidence: NTLM / Negotiate tokens and Digest nonces redacted. */
export function redactChallenges(values: string[]): string[] {
  return values.map((v) =>
    v
      .replace(/^((?:NTLM|Negotiate|Kerberos) +)\S+$/i, '$1<redacted>')
      .replace(/\b((?:nonce|opaque)=)("[^"]*"|[^\s,]+)/gi, '$1<redacted>'),
  );
}
