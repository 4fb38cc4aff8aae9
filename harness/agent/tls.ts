/**
 * The agent's TLS client over an established tunnel (or a direct connection): an explicit trust
 * store, optional SPKI pins and an optional client certificate, with the handshake always
 * completed so the evidence shows the chain the agent was presented, whether or not it accepted
 * it. The CONNECT half is tunnel.ts.
 */
import { X509Certificate } from 'node:crypto';
import type { Socket } from 'node:net';
import tls, { type PeerCertificate, type TLSSocket } from 'node:tls';
import { errorMessage } from '../errors.ts';
import { spkiSha256 } from '../lab/pki.ts';

export interface ChainCert {
  subject: string;
  issuer: string;
  subjectCN: string;
  issuerCN: string;
  spkiSha256: string;
  fingerprint256: string;
  validTo: string;
}

export interface TlsOptions {
  servername: string;
  /** The agent's trust store (PEM). Node's default store is never added implicitly. */
  ca: string[];
  /** base64 SHA-256 SPKI pins; when set, the leaf key must match one. */
  pins?: string[];
  /** Client certificate for mutual TLS. */
  cert?: string;
  key?: string;
  alpn?: string[];
  timeoutMs?: number;
  /**
   * Describe the presented chain in the result (default true). Load generation turns it off: the
   * session is still refused on an untrusted chain, a wrong name or a pin mismatch, but the chain's
   * evidence (an X.509 parse and a key export per certificate) is not made.
   */
  describe?: boolean;
}

export interface TlsResult {
  /** Present only when the agent accepted the session (chain, name and pins all fine). */
  socket?: TLSSocket;
  handshakeMs?: number;
  chain: ChainCert[];
  /** Chain verified against the agent's store. */
  authorized: boolean;
  authorizationError?: string;
  nameMismatch?: string;
  pinMatched?: boolean;
  /** Why the agent refused, when it did. */
  refused?: string;
  /** The handshake itself failed (alert, reset, deadline). */
  error?: string;
}

/** The CN of a DN as X509Certificate writes it (one `KEY=value` a line); the whole DN when it has none. */
export function commonName(dn: string): string {
  return /(?:^|\n)CN=([^\n]*)/.exec(dn)?.[1] ?? dn;
}

export function describeChain(peer: PeerCertificate | undefined): ChainCert[] {
  const out: ChainCert[] = [];
  const seen = new Set<string>();
  let cur = peer as (PeerCertificate & { issuerCertificate?: PeerCertificate }) | undefined;
  while (cur?.raw && !seen.has(cur.fingerprint256)) {
    seen.add(cur.fingerprint256);
    const x = new X509Certificate(cur.raw);
    out.push({
      subject: x.subject.replace(/\n/g, ', '),
      issuer: x.issuer.replace(/\n/g, ', '),
      subjectCN: commonName(x.subject),
      issuerCN: commonName(x.issuer),
      spkiSha256: spkiSha256(x),
      fingerprint256: x.fingerprint256,
      validTo: x.validTo,
    });
    cur = cur.issuerCertificate as typeof cur;
  }
  return out;
}

/**
 * TLS over an established tunnel, judged the way an agent judges it: the chain must verify
 * against the agent's own store, the name must match, and pins (if any) must match the leaf.
 * The handshake completes either way so the evidence shows what was presented; the agent sends
 * nothing over a session it refused, and the socket is destroyed.
 */
export function startTls(tunnel: Socket, opts: TlsOptions): Promise<TlsResult> {
  const timeoutMs = opts.timeoutMs ?? 10_000;
  return new Promise((resolve) => {
    const t0 = performance.now();
    let settled = false;
    const socket = tls.connect({
      socket: tunnel,
      servername: opts.servername,
      ca: opts.ca,
      rejectUnauthorized: false,
      checkServerIdentity: () => undefined,
      ...(opts.cert && opts.key ? { cert: opts.cert, key: opts.key } : {}),
      ...(opts.alpn ? { ALPNProtocols: opts.alpn } : {}),
    });
    tunnel.resume();
    const timer = setTimeout(
      () =>
        done({
          chain: [],
          authorized: false,
          error: `TLS handshake with ${opts.servername}: no answer within ${timeoutMs} ms`,
        }),
      timeoutMs,
    );
    function done(r: TlsResult): void {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (!r.socket) socket.destroy();
      resolve(r);
    }
    socket.once('secureConnect', () => {
      const handshakeMs = Math.round(performance.now() - t0);
      const peer = socket.getPeerCertificate(true);
      const chain = opts.describe === false && !opts.pins?.length ? [] : describeChain(peer);
      const authorized = socket.authorized;
      const authorizationError = socket.authorizationError ? String(socket.authorizationError) : undefined;
      const idErr = peer?.raw ? tls.checkServerIdentity(opts.servername, peer) : new Error('no certificate');
      const nameMismatch = idErr ? idErr.message : undefined;
      const leafPin = chain[0]?.spkiSha256;
      const pinMatched = opts.pins?.length ? leafPin !== undefined && opts.pins.includes(leafPin) : undefined;
      const reasons: string[] = [];
      if (!authorized) reasons.push(`certificate chain not trusted by the agent (${authorizationError})`);
      if (nameMismatch) reasons.push(`certificate name mismatch: ${nameMismatch}`);
      if (pinMatched === false)
        reasons.push(`pinned key mismatch: presented ${leafPin}, pinned ${opts.pins?.join(' or ')}`);
      const refused = reasons.length ? reasons.join('; ') : undefined;
      const base = {
        handshakeMs,
        chain,
        authorized,
        ...(authorizationError ? { authorizationError } : {}),
        ...(nameMismatch ? { nameMismatch } : {}),
        ...(pinMatched !== undefined ? { pinMatched } : {}),
      };
      if (refused) done({ ...base, refused });
      else done({ ...base, socket });
    });
    socket.once('error', (err) =>
      done({
        chain: [],
        authorized: false,
        error: `TLS handshake with ${opts.servername}: ${errorMessage(err)}`,
      }),
    );
    socket.once('close', () =>
      done({
        chain: [],
        authorized: false,
        error: `TLS handshake with ${opts.servername}: connection closed`,
      }),
    );
  });
}
