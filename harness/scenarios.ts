/**
 * Scenario data (catalogs, agent profiles, expectations) lives in `scenarios/` as YAML and is
 * validated against the JSON schemas in `scenarios/schema/` when loaded. Bad data is a UsageError
 * naming the file and the first problem.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import { parse as parseYaml } from 'yaml';
import { UsageError } from './errors.ts';
import type { Outcome } from './model.ts';

export const SCENARIOS_DIR = fileURLToPath(new URL('../scenarios/', import.meta.url));

export interface CatalogEndpoint {
  host: string;
  port: number;
  transport: 'https' | 'http' | 'tls' | 'tcp' | 'mqtts' | 'udp';
  purpose: string;
  products?: string[];
  region?: string;
  mustNotInspect: boolean;
  pinned: boolean;
  scope?: 'agent' | 'out-of-scope';
  scopeReason?: string;
  source: string[];
}

export interface Catalog {
  id: string;
  vendor: string;
  endpoints: CatalogEndpoint[];
}

export interface ProfileRequest {
  name: string;
  method: 'GET' | 'POST' | 'PUT';
  path: string;
  bytes?: number;
}

export interface ProfileExchange {
  catalog: string;
  host: string;
  port: number;
  userAgent?: string;
  headers?: Array<[string, string]>;
  requests: ProfileRequest[];
}

export interface Profile {
  id: string;
  title: string;
  source: string[];
  exchanges: ProfileExchange[];
}

type OneOrMany = string | string[];
export interface ExpectationRule {
  match: { profile?: OneOrMany; endpoint?: OneOrMany; check?: OneOrMany };
  expect: Outcome;
  reason: string;
}
export interface Expectations {
  proxy: string;
  rules: ExpectationRule[];
}

const ajv = new Ajv({ allErrors: false, strict: false });
const validators = new Map<string, ValidateFunction>();

function validator(name: string): ValidateFunction {
  let v = validators.get(name);
  if (!v) {
    const schema = JSON.parse(readFileSync(join(SCENARIOS_DIR, 'schema', `${name}.schema.json`), 'utf8'));
    v = ajv.compile(schema);
    validators.set(name, v);
  }
  return v;
}

function describeError(e: ErrorObject | undefined): string {
  if (!e) return 'invalid';
  return `${e.instancePath || '/'} ${e.message ?? 'is invalid'}${e.params && 'allowedValues' in e.params ? ` (${(e.params.allowedValues as unknown[]).join(', ')})` : ''}`;
}

export function validate<T>(schemaName: string, data: unknown, where: string): T {
  const v = validator(schemaName);
  if (!v(data)) throw new UsageError(`${where}: ${describeError(v.errors?.[0])}`);
  return data as T;
}

function loadDir<T>(sub: string, schemaName: string, dir = SCENARIOS_DIR): T[] {
  const path = join(dir, sub);
  return readdirSync(path)
    .filter((f) => f.endsWith('.yaml') || f.endsWith('.yml'))
    .sort()
    .map((f) => {
      const file = join(path, f);
      let data: unknown;
      try {
        data = parseYaml(readFileSync(file, 'utf8'));
      } catch (err) {
        throw new UsageError(`${file}: not valid YAML: ${(err as Error).message.split('\n')[0]}`);
      }
      return validate<T>(schemaName, data, file);
    });
}

export interface ScenarioSet {
  catalogs: Map<string, Catalog>;
  profiles: Map<string, Profile>;
  expectations: Map<string, Expectations>;
  /** The value that replaces `{tenant}` in catalog hosts. */
  tenant: string;
}

export const DEFAULT_LAB_TENANT = 'lab01';

export function loadScenarios(opts: { dir?: string; tenant?: string } = {}): ScenarioSet {
  const dir = opts.dir ?? SCENARIOS_DIR;
  const set: ScenarioSet = {
    catalogs: new Map(loadDir<Catalog>('catalogs', 'catalog', dir).map((c) => [c.id, c])),
    profiles: new Map(loadDir<Profile>('profiles', 'profile', dir).map((p) => [p.id, p])),
    expectations: new Map(
      loadDir<Expectations>('expectations', 'expectations', dir).map((e) => [e.proxy, e]),
    ),
    tenant: opts.tenant ?? DEFAULT_LAB_TENANT,
  };
  checkReferences(set);
  return set;
}

export function resolveHost(template: string, tenant: string): string {
  return template.replace(/\{tenant\}/g, tenant);
}

/** Every profile exchange must name a catalog row: nothing is replayed that no seed names. */
function checkReferences(set: ScenarioSet): void {
  for (const p of set.profiles.values()) {
    for (const x of p.exchanges) {
      const cat = set.catalogs.get(x.catalog);
      if (!cat) throw new UsageError(`profile ${p.id}: unknown catalog "${x.catalog}"`);
      if (!cat.endpoints.some((e) => e.host === x.host && e.port === x.port)) {
        throw new UsageError(`profile ${p.id}: ${x.host}:${x.port} is not in catalog ${x.catalog}`);
      }
    }
  }
}

export function catalogRow(set: ScenarioSet, x: ProfileExchange): CatalogEndpoint {
  const row = set.catalogs.get(x.catalog)?.endpoints.find((e) => e.host === x.host && e.port === x.port);
  if (!row) throw new UsageError(`${x.host}:${x.port} is not in catalog ${x.catalog}`);
  return row;
}

function matches(value: string, pattern: OneOrMany | undefined): boolean {
  if (pattern === undefined) return true;
  return (Array.isArray(pattern) ? pattern : [pattern]).includes(value);
}

/** The first matching rule wins; no rule means `fallback` (`pass`, or `skip` where a check does not apply). */
export function expectationFor(
  set: ScenarioSet,
  key: { proxy: string; profile: string; endpoint: string; check: string },
  fallback: Outcome = 'pass',
): { expect: Outcome; reason?: string } {
  const rules = set.expectations.get(key.proxy)?.rules ?? [];
  for (const r of rules) {
    if (
      matches(key.profile, r.match.profile) &&
      matches(key.endpoint, r.match.endpoint) &&
      matches(key.check, r.match.check)
    ) {
      return { expect: r.expect, reason: r.reason };
    }
  }
  return { expect: fallback };
}
