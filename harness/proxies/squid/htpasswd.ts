/**
 * htpasswd lines for squid's basic_ncsa_auth, hashed with Apache's MD5-crypt (`$apr1$`), which
 * basic_ncsa_auth accepts (it rejects `{SHA}` and plaintext). Pure node:crypto, after the
 * FreeBSD/Apache md5crypt algorithm (Poul-Henning Kamp): 1000 rounds of MD5 over password,
 * salt and magic, then a custom base-64 of 16 permuted digest bytes.
 */
import { createHash, randomBytes } from 'node:crypto';

const ITOA64 = './0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';

function md5(...parts: Buffer[]): Buffer {
  const h = createHash('md5');
  for (const part of parts) h.update(part);
  return h.digest();
}

function to64(value: number, n: number): string {
  let s = '';
  let v = value;
  for (let i = 0; i < n; i++) {
    s += ITOA64[v & 0x3f];
    v >>>= 6;
  }
  return s;
}

/** A random 8-character salt from the crypt alphabet. */
export function randomSalt(): string {
  return [...randomBytes(8)].map((b) => ITOA64[b & 0x3f]).join('');
}

/** `$apr1$<salt>$<hash>` (or `$1$...` with magic `$1$`). */
export function md5crypt(password: string, salt: string = randomSalt(), magic = '$apr1$'): string {
  const salt8 = salt.slice(0, 8);
  if (/[$:\s]/.test(salt8)) throw new Error('md5crypt salt must not contain "$", ":" or whitespace');
  const pw = Buffer.from(password, 'utf8');
  const sl = Buffer.from(salt8, 'utf8');
  const mg = Buffer.from(magic, 'utf8');

  let fin = md5(pw, sl, pw);
  const parts: Buffer[] = [pw, mg, sl];
  for (let left = pw.length; left > 0; left -= 16) parts.push(fin.subarray(0, Math.min(16, left)));
  for (let i = pw.length; i; i >>= 1) parts.push(i & 1 ? Buffer.from([0]) : pw.subarray(0, 1));
  fin = md5(...parts);

  for (let i = 0; i < 1000; i++) {
    const round: Buffer[] = [i & 1 ? pw : fin];
    if (i % 3) round.push(sl);
    if (i % 7) round.push(pw);
    round.push(i & 1 ? fin : pw);
    fin = md5(...round);
  }

  const b = (i: number) => fin[i] ?? 0;
  const out =
    to64((b(0) << 16) | (b(6) << 8) | b(12), 4) +
    to64((b(1) << 16) | (b(7) << 8) | b(13), 4) +
    to64((b(2) << 16) | (b(8) << 8) | b(14), 4) +
    to64((b(3) << 16) | (b(9) << 8) | b(15), 4) +
    to64((b(4) << 16) | (b(10) << 8) | b(5), 4) +
    to64(b(11), 2);
  return `${magic}${salt8}$${out}`;
}

/** One htpasswd line. User names must not contain ":" (the field separator) or line breaks. */
export function htpasswdLine(username: string, password: string, salt?: string): string {
  if (/[:\r\n]/.test(username)) throw new Error('htpasswd user names must not contain ":" or line breaks');
  return `${username}:${md5crypt(password, salt)}\n`;
}
