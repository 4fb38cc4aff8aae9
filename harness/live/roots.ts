/**
 * Trust anchors for live mode. The "public" store is Node's bundled Mozilla root list
 * (`tls.rootCertificates`), which is what tells an origin's own certificate from one an
 * inspecting proxy re-signed. `PROXYCHECK_PUBLIC_ROOTS=FILE` replaces it with the PEM certificates
 * in FILE: the tests use it to play the public web PKI with the lab root, never the internet.
 */
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import tls from 'node:tls';
import { type ChainCert, commonName } from '../agent/tls.ts';
import { UsageError } from '../errors.ts';

export const PUBLIC_ROOTS_ENV = 'PROXYCHECK_PUBLIC_ROOTS';

export interface RootStore {
  /** Where the certificates come from, for messages. */
  label: string;
  pems: string[];
  fingerprints: Set<string>;
  /** Subject DNs as `describeChain` (agent/tls.ts) writes them (`CN=…, O=…`). */
  subjects: Set<string>;
  /** Subject CN per fingerprint. */
  names: Map<string, string>;
}

const PEM_CERT = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

/** Every certificate in a PEM text; a UsageError naming `what` when there is none or one is bad. */
export function splitPem(text: string, what: string): string[] {
  const pems = text.match(PEM_CERT) ?? [];
  if (!pems.length) throw new UsageError(`${what}: not a PEM certificate`);
  return pems;
}

export function rootStore(pems: string[], label: string): RootStore {
  const store: RootStore = { label, pems, fingerprints: new Set(), subjects: new Set(), names: new Map() };
  for (const pem of pems) {
    let x: X509Certificate;
    try {
      x = new X509Certificate(pem);
    } catch (err) {
      throw new UsageError(`${label}: a certificate does not parse (${(err as Error).message})`);
    }
    store.fingerprints.add(x.fingerprint256);
    store.subjects.add(x.subject.replace(/\n/g, ', '));
    store.names.set(x.fingerprint256, commonName(x.subject));
  }
  return store;
}

export function readPemFile(file: string, what: string): string[] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new UsageError(`${what} ${file}: ${(err as NodeJS.ErrnoException).code ?? 'unreadable'}`);
  }
  return splitPem(text, `${what} ${file}`);
}

/** Node's public roots, or the PEM file named by PROXYCHECK_PUBLIC_ROOTS. */
export function publicRootStore(env: NodeJS.ProcessEnv = process.env): RootStore {
  const file = env[PUBLIC_ROOTS_ENV];
  if (file) return rootStore(readPemFile(file, PUBLIC_ROOTS_ENV), `public roots from ${file}`);
  return rootStore([...tls.rootCertificates], "Node's public root store");
}

export type Anchor =
  | { kind: 'public'; name: string }
  | { kind: 'trusted-ca'; name: string }
  | { kind: 'other'; name: string };

/**
 * Where the presented chain leads. Node appends the trust anchor it verified against to the peer
 * chain, so a chain that verified ends in a certificate of one of the stores; one that did not is
 * judged by its top issuer's name (an origin's expired certificate still names a public root).
 */
export function anchorOf(chain: ChainCert[], publicRoots: RootStore, trusted: RootStore): Anchor {
  for (const c of chain) {
    if (publicRoots.fingerprints.has(c.fingerprint256)) return { kind: 'public', name: c.subjectCN };
  }
  for (const c of chain) {
    if (trusted.fingerprints.has(c.fingerprint256)) return { kind: 'trusted-ca', name: c.subjectCN };
  }
  const top = chain[chain.length - 1];
  // a self-signed top that is not in the store is not a public root, whatever it calls itself
  if (top && top.subject !== top.issuer && publicRoots.subjects.has(top.issuer))
    return { kind: 'public', name: top.issuerCN };
  return { kind: 'other', name: chain[0]?.issuerCN ?? 'unknown' };
}
