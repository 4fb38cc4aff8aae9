/**
 * Catalog host parameters: the `{name}` placeholders in catalog hosts (`{tenant}`, or a parameter
 * a catalog declares), the user's values for them (checked here when the scenarios load), and
 * their resolution into real host names (user value, then tenant, then the catalog's lab default).
 * harness/scenarios.ts re-exports what importers use, so they import from there.
 */
import { UsageError } from './errors.ts';
import type { CatalogParameter } from './scenarios.ts';

/** `{name}` in a host: lowercase words joined by dashes. */
const PLACEHOLDER = /\{([^{}]*)\}/g;
const PARAMETER_NAME = /^[a-z][a-z0-9]*(?:-[a-z0-9]+)*$/;
const HOST_VALUE = /^[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?$/;

/** The placeholder names in a host template, each once, in order. */
export function placeholders(template: string): string[] {
  return [...new Set([...template.matchAll(PLACEHOLDER)].map((m) => m[1] ?? ''))];
}

/** Where resolveHost finds values; a bare string is the tenant alone (older callers). */
export type HostValues =
  | string
  | {
      tenant?: string;
      params?: Readonly<Record<string, string | undefined>>;
      parameters?: ReadonlyMap<string, { lab: string }>;
    };

/**
 * Replaces every `{name}` in a catalog host with, in order: the user's value (`params`), the tenant
 * for `{tenant}`, the lab default the catalog declares. Pass the ScenarioSet. A placeholder with no
 * value is a UsageError naming it.
 */
export function resolveHost(template: string, values: HostValues): string {
  const v = typeof values === 'string' ? { tenant: values } : values;
  return template.replace(PLACEHOLDER, (_, name: string) => {
    const value =
      v.params?.[name] || (name === 'tenant' ? v.tenant : undefined) || v.parameters?.get(name)?.lab;
    if (!value) {
      const known = ['tenant', ...(v.parameters?.keys() ?? [])].filter((n, i, a) => a.indexOf(n) === i);
      throw new UsageError(
        `host "${template}": unknown parameter {${name}} (known: ${known.map((n) => `{${n}}`).join(', ')})`,
      );
    }
    return value;
  });
}

/**
 * The placeholders of `template` the user gave no value for (live mode skips such rows: a lab
 * default means nothing on the internet). `tenant` counts only when it is in `explicitParams`.
 */
export function missingParams(
  template: string,
  explicitParams: Readonly<Record<string, string | undefined>>,
): string[] {
  return placeholders(template).filter((name) => !explicitParams[name]);
}

/**
 * The user's host parameter values, checked: each must be `tenant` or a parameter some catalog
 * declares, with a parameter-like name and a host-name-like value. Returns a copy.
 */
export function checkParams(
  params: Record<string, string>,
  parameters: Map<string, CatalogParameter & { catalog: string }>,
): Record<string, string> {
  for (const [name, value] of Object.entries(params)) {
    if (name !== 'tenant' && !parameters.has(name)) {
      throw new UsageError(
        `unknown host parameter "${name}" (known: ${['tenant', ...parameters.keys()].join(', ')})`,
      );
    }
    if (!PARAMETER_NAME.test(name) || !HOST_VALUE.test(value)) {
      throw new UsageError(`host parameter ${name}="${value}": not a host name or host name part`);
    }
  }
  return { ...params };
}
