/**
 * Catalog hosts name customer-specific parts as `{name}` placeholders (`{tenant}` is the vendor's
 * "***" customer id, others are declared under a catalog's `parameters`). Their values come from
 * `--tenant` and `--param name=value` (checked against the catalogs by loadScenarios). In live mode
 * a row whose placeholders the user did not fill is skipped with that reason: a lab default means
 * nothing on the internet.
 */
import { UsageError } from '../errors.ts';

/** How the user gives a value: `--tenant ID` for `{tenant}`, `--param name=value` for the rest. */
export function flagFor(name: string): string {
  return name === 'tenant' ? '--tenant ID' : `--param ${name}=VALUE`;
}

const VALUE = /^[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?$/;

/** Parses repeated `--param name=value` flags (plus `--tenant`) into one map; bad input is a UsageError. */
export function parseParams(flags: string[], tenant: string | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  const set = (name: string, value: string, flag: string) => {
    if (!/^[a-z][a-z0-9_-]*$/.test(name))
      throw new UsageError(`${flag}: parameter names are lower-case letters, digits, - and _, not "${name}"`);
    if (!VALUE.test(value) || value.includes('..'))
      throw new UsageError(`${flag}: "${value}" cannot be part of a host name (letters, digits, - and .)`);
    if (out[name] !== undefined && out[name] !== value)
      throw new UsageError(`${flag}: ${name} is given twice ("${out[name]}" and "${value}")`);
    out[name] = value;
  };
  if (tenant !== undefined) set('tenant', tenant, '--tenant');
  for (const f of flags) {
    const i = f.indexOf('=');
    if (i <= 0) throw new UsageError(`--param must be name=value, not "${f}"`);
    set(f.slice(0, i), f.slice(i + 1), `--param ${f}`);
  }
  return out;
}
