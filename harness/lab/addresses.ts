/**
 * Deterministic loopback addresses for lab hosts.
 *
 * Scheme: `127.<net>.<a>.<b>` where `a` and `b` come from the SHA-256 of the lower-cased host
 * name: a = digest[0], b = 1 + (digest[1] % 254). `net` defaults to 77 (override with
 * `--lab-net` or PROXYCHECK_LAB_NET) so several labs can run side by side (the tests do).
 * The same name always gets the same address, on every run and every machine, so hosts files and
 * proxy configurations can be written once.
 */
import { createHash } from 'node:crypto';
import { isIP } from 'node:net';
import { UsageError } from '../errors.ts';

export const DEFAULT_LAB_NET = 77;

export function parseLabNet(value: string | number | undefined): number {
  if (value === undefined || value === '') return DEFAULT_LAB_NET;
  const n = typeof value === 'number' ? value : Number(value);
  if (!Number.isInteger(n) || n < 1 || n > 254) {
    throw new UsageError(
      `lab net must be a whole number from 1 to 254 (the second octet of 127.N.x.y), not "${value}"`,
    );
  }
  return n;
}

export function labAddress(host: string, net: number = DEFAULT_LAB_NET): string {
  const d = createHash('sha256').update(host.toLowerCase()).digest();
  return `127.${net}.${d[0]}.${1 + ((d[1] ?? 0) % 254)}`;
}

export function isLoopback(address: string): boolean {
  if (isIP(address) === 4) return address.startsWith('127.');
  if (isIP(address) === 6) return address === '::1';
  return false;
}
