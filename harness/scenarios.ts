/**
 * Scenario data (catalogs, agent profiles, expectations) lives in `scenarios/` as YAML and is
 * validated against the JSON schemas in `scenarios/schema/` when loaded. Bad data is a UsageError
 * naming the file and the first problem. Host parameters (`{name}` in catalog hosts, their values
 * and resolution) are scenario-hosts.ts, re-exported here.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import { parse as parseYaml } from 'yaml';
import { exchangeProblem, registeredKinds } from './agent/kinds/index.ts';
import { isCheck } from './checks/index.ts';
import { UsageError } from './errors.ts';
import type { Outcome } from './model.ts';
import { type ProxyDefinition, unsupportedKnob } from './proxies/definition.ts';
import { checkParams, placeholders } from './scenario-hosts.ts';

export { type HostValues, missingParams, placeholders, resolveHost } from './scenario-hosts.ts';

export const SCENARIOS_DIR = fileURLToPath(new URL('../scenarios/', import.meta.url));

export interface CatalogEndpoint {
  /** May hold `{name}` placeholders: catalog parameters (see resolveHost). */
  host: string;
  port: number;
  transport: 'https' | 'http' | 'tls' | 'tcp' | 'mqtts' | 'udp';
  purpose: string;
  /** URL paths the seed names for this host (path-bearing URLs). */
  paths?: string[];
  products?: string[];
  region?: string;
  mustNotInspect: boolean;
  pinned: boolean;
  scope?: 'agent' | 'out-of-scope';
  scopeReason?: string;
  source: string[];
}

/** A host part the seeds leave to the customer (`{name}` in hosts); `lab` is its lab value. */
export interface CatalogParameter {
  description: string;
  lab: string;
  source: string[];
}

export interface Catalog {
  id: string;
  vendor: string;
  parameters?: Record<string, CatalogParameter>;
  endpoints: CatalogEndpoint[];
}

export interface ProfileRequest {
  name: string;
  method: 'GET' | 'POST' | 'PUT';
  path: string;
  bytes?: number;
}

/** A long-lived exchange. Durations are real seconds; the runner multiplies them by --time-scale. */
export interface SessionSpec {
  seconds?: number;
  keepaliveSeconds?: number;
  intervalSeconds?: number;
  bursts?: number;
  burstBytes?: number;
  uploadEverySeconds?: number;
  uploadBytes?: number[];
}

export interface ProfileExchange {
  /** What the agent speaks to this endpoint (default https): an exchange kind's id. */
  kind?: string;
  catalog: string;
  host: string;
  port: number;
  /** Label when one endpoint has several exchanges. */
  name?: string;
  userAgent?: string;
  headers?: Array<[string, string]>;
  requests?: ProfileRequest[];
  /** WebSocket path (websocket, mqtt-ws, amqp-ws). */
  path?: string;
  session?: SessionSpec;
  messages?: number;
  messageBytes?: number;
  failover?: { port: number };
  clientCert?: boolean;
  strictConnect?: boolean;
  instances?: number;
  /** What the agent does when its proxy cannot be reached: its profile's `proxyUnreachable`, set on every exchange at load. */
  proxyUnreachable?: ProxyUnreachable;
  /** `probe` (validate --origins live): the catalog row's transport, and flags the row still needs. */
  transport?: CatalogEndpoint['transport'];
  missing?: string[];
}

/** What an agent does when its configured proxy cannot be reached (profile `proxyUnreachable`). */
export interface ProxyUnreachable {
  /** auto-detect: fail-open (the machine's own settings: WPAD, PAC, DIRECT); none: fail-closed. */
  fallback: 'auto-detect' | 'none';
  source: string[];
  connectDeadlineSeconds?: number;
  deadlineSource?: string;
  fallbackWithinSeconds?: number;
  /** The agent, for messages (the profile's title). */
  agent?: string;
  /** Set at load when the profile says nothing: no source documents a fallback. */
  undocumented?: boolean;
}

export interface Profile {
  id: string;
  title: string;
  source: string[];
  proxyUnreachable?: ProxyUnreachable;
  exchanges: ProfileExchange[];
}

type OneOrMany = string | string[];
export interface ExpectationRule {
  match: {
    profile?: OneOrMany;
    endpoint?: OneOrMany;
    check?: OneOrMany;
    /** Endpoint port(s). */
    port?: number | number[];
    /** Exchange kind(s) (https, tcp-stream, cira, ...). */
    kind?: OneOrMany;
    /** Catalog row attributes. */
    mustNotInspect?: boolean;
    pinned?: boolean;
  };
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

/** The files of one scenario folder, each validated against its schema, with where it came from. */
function loadFiles<T>(
  sub: string,
  schemaName: string,
  dir = SCENARIOS_DIR,
): Array<{ file: string; data: T }> {
  const path = join(dir, sub);
  return readdirSync(path)
    .filter((f) => f.endsWith('.yaml') || f.endsWith('.yml'))
    .sort()
    .map((f) => {
      const file = join(path, f);
      return { file, data: validate<T>(schemaName, readYamlFile(file), file) };
    });
}

/** A scenario file's YAML; a file that cannot be read or parsed is one line naming it. */
function readYamlFile(file: string, what = 'it'): unknown {
  try {
    return parseYaml(readFileSync(file, 'utf8'));
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw new UsageError(
      e.code
        ? `${file}: cannot read ${what} (${e.code})`
        : `${file}: not valid YAML: ${e.message.split('\n')[0]}`,
    );
  }
}

function loadDir<T>(sub: string, schemaName: string, dir = SCENARIOS_DIR): T[] {
  return loadFiles<T>(sub, schemaName, dir).map((f) => f.data);
}

/** Each exchange against its kind's option schema: an option the kind does not take is an error. */
function checkExchanges(files: Array<{ file: string; data: Profile }>): void {
  const defs = (
    JSON.parse(readFileSync(join(SCENARIOS_DIR, 'schema', 'profile.schema.json'), 'utf8')) as {
      $defs: Record<string, unknown>;
    }
  ).$defs;
  for (const { file, data } of files) {
    data.exchanges.forEach((x, i) => {
      const problem = exchangeProblem(x as unknown as Record<string, unknown>, defs);
      if (problem) throw new UsageError(`${file}: /exchanges/${i}${problem}`);
    });
  }
}

/**
 * Every name in an expectation rule must exist: a rule naming a check, kind, profile or proxy that
 * does not would be silently dead.
 */
function checkExpectations(
  files: Array<{ file: string; data: Expectations }>,
  profiles: Map<string, Profile>,
  field = 'rules',
): void {
  const many = (v: string | string[] | undefined) => (v === undefined ? [] : Array.isArray(v) ? v : [v]);
  const kinds = registeredKinds();
  for (const { file, data } of files) {
    data.rules.forEach((r, i) => {
      const at = `${file}: /${field}/${i}/match`;
      for (const c of many(r.match.check))
        if (!isCheck(c)) throw new UsageError(`${at}/check "${c}" is not a check`);
      for (const k of many(r.match.kind))
        if (!kinds.includes(k))
          throw new UsageError(`${at}/kind "${k}" is not an exchange kind (known: ${kinds.join(', ')})`);
      for (const p of many(r.match.profile))
        if (!profiles.has(p))
          throw new UsageError(`${at}/profile "${p}" is not a profile in this scenario set`);
    });
  }
}

/** A proxy definition with the file it came from. */
export interface LoadedDefinition extends ProxyDefinition {
  file: string;
}

export interface ScenarioSet {
  catalogs: Map<string, Catalog>;
  profiles: Map<string, Profile>;
  /** Proxy definitions by id: the built-in ones, then the scenario directory's (same id wins). */
  proxies: Map<string, LoadedDefinition>;
  /** Expected outcomes for proxies that are not definitions (adapters registered in code). */
  expectations: Map<string, Expectations>;
  /** The file each proxy's expectations came from (for errors naming it). */
  expectationFiles?: Map<string, string>;
  /** The value that replaces `{tenant}` in catalog hosts. */
  tenant: string;
  /** Host parameter values given by the user (`{name}` → value); they win over lab defaults. */
  params: Record<string, string>;
  /** Every host parameter the catalogs declare, by name, with its lab default. */
  parameters: Map<string, CatalogParameter & { catalog: string }>;
}

export const DEFAULT_LAB_TENANT = 'lab01';

export function loadScenarios(
  opts: { dir?: string; tenant?: string; params?: Record<string, string> } = {},
): ScenarioSet {
  const dir = opts.dir ?? SCENARIOS_DIR;
  const catalogs = loadDir<Catalog>('catalogs', 'catalog', dir);
  const parameters = checkCatalogs(catalogs);
  const profileFiles = loadFiles<Profile>('profiles', 'profile', dir);
  checkExchanges(profileFiles);
  for (const { data: p } of profileFiles) attachProxyUnreachable(p);
  const profiles = new Map(profileFiles.map(({ data: p }) => [p.id, p]));
  const expectationFiles = existsSync(join(dir, 'expectations'))
    ? loadFiles<Expectations>('expectations', 'expectations', dir)
    : [];
  checkExpectations(expectationFiles, profiles);
  const proxies = loadDefinitions(SCENARIOS_DIR, profiles);
  if (dir !== SCENARIOS_DIR && existsSync(join(dir, 'proxies')))
    for (const [id, d] of loadDefinitions(dir, profiles)) proxies.set(id, d);
  const set: ScenarioSet = {
    catalogs: new Map(catalogs.map((c) => [c.id, c])),
    profiles,
    proxies,
    expectations: new Map(expectationFiles.map(({ data: e }) => [e.proxy, e])),
    expectationFiles: new Map(expectationFiles.map(({ file, data: e }) => [e.proxy, file])),
    tenant: opts.tenant ?? DEFAULT_LAB_TENANT,
    params: checkParams(opts.params ?? {}, parameters),
    parameters,
  };
  checkReferences(set);
  return set;
}

/**
 * Every exchange carries what its agent does when the proxy cannot be reached: the profile's
 * `proxyUnreachable`, or, where the profile's sources document no fallback, fail-closed.
 */
function attachProxyUnreachable(p: Profile): void {
  const policy: ProxyUnreachable = p.proxyUnreachable
    ? { ...p.proxyUnreachable, agent: p.title }
    : { fallback: 'none', source: p.source, agent: p.title, undocumented: true };
  for (const x of p.exchanges) x.proxyUnreachable = policy;
}

/** The definitions in `dir/proxies/`, each valid, honourable by its engine and named once. */
function loadDefinitions(dir: string, profiles: Map<string, Profile>): Map<string, LoadedDefinition> {
  const out = new Map<string, LoadedDefinition>();
  for (const { file, data } of loadFiles<ProxyDefinition>('proxies', 'proxy', dir)) {
    const seen = out.get(data.id);
    if (seen) throw new UsageError(`${file}: /id "${data.id}" is already defined in ${seen.file}`);
    out.set(data.id, checkDefinition(file, data, profiles));
  }
  return out;
}

function checkDefinition(file: string, d: ProxyDefinition, profiles: Map<string, Profile>): LoadedDefinition {
  const problem = unsupportedKnob(d);
  if (problem) throw new UsageError(`${file}: ${problem}`);
  checkExpectations([{ file, data: { proxy: d.id, rules: d.deviations ?? [] } }], profiles, 'deviations');
  return { ...d, file };
}

/** A definition given as a file (`--proxies ./customer-x.yaml`), checked as the scenario set's are. */
export function loadDefinitionFile(path: string, set: ScenarioSet): LoadedDefinition {
  return checkDefinition(
    path,
    validate<ProxyDefinition>('proxy', readYamlFile(path, 'the proxy definition'), path),
    set.profiles,
  );
}

/** Each row at most once per (host, port, TCP or UDP); hosts use only `{tenant}` or declared parameters. */
function checkCatalogs(catalogs: Catalog[]): Map<string, CatalogParameter & { catalog: string }> {
  const parameters = new Map<string, CatalogParameter & { catalog: string }>();
  for (const c of catalogs) {
    for (const [name, p] of Object.entries(c.parameters ?? {})) {
      const seen = parameters.get(name);
      if (seen && seen.lab !== p.lab) {
        throw new UsageError(
          `catalog ${c.id}: parameter {${name}} has lab value "${p.lab}", catalog ${seen.catalog} says "${seen.lab}"`,
        );
      }
      if (!seen) parameters.set(name, { ...p, catalog: c.id });
    }
  }
  for (const c of catalogs) {
    const rows = new Set<string>();
    for (const e of c.endpoints) {
      for (const name of placeholders(e.host)) {
        if (name !== 'tenant' && !c.parameters?.[name]) {
          throw new UsageError(`catalog ${c.id}: host "${e.host}" uses {${name}}, not in its parameters`);
        }
      }
      const key = `${e.host}:${e.port}/${e.transport === 'udp' ? 'udp' : 'tcp'}`;
      if (rows.has(key)) throw new UsageError(`catalog ${c.id}: ${key} is listed twice`);
      rows.add(key);
    }
  }
  return parameters;
}

/** Every profile exchange must name a catalog row: nothing is replayed that no seed names. */
function checkReferences(set: ScenarioSet): void {
  for (const p of set.profiles.values()) {
    for (const x of p.exchanges) {
      const cat = set.catalogs.get(x.catalog);
      if (!cat) throw new UsageError(`profile ${p.id}: unknown catalog "${x.catalog}"`);
      if (!cat.endpoints.some((e) => e.host === x.host && e.port === x.port && e.transport !== 'udp')) {
        throw new UsageError(`profile ${p.id}: ${x.host}:${x.port} is not in catalog ${x.catalog}`);
      }
      const fo = x.failover?.port;
      if (
        fo !== undefined &&
        !cat.endpoints.some((e) => e.host === x.host && e.port === fo && e.transport !== 'udp')
      ) {
        throw new UsageError(`profile ${p.id}: failover ${x.host}:${fo} is not in catalog ${x.catalog}`);
      }
    }
  }
}

export function catalogRow(set: ScenarioSet, x: ProfileExchange): CatalogEndpoint {
  // A profile exchange is TCP: a UDP row on the same host and port (Kaspersky 13000) is another row.
  const row = set.catalogs
    .get(x.catalog)
    ?.endpoints.find(
      (e) =>
        e.host === x.host &&
        e.port === x.port &&
        (x.transport ? e.transport === x.transport : e.transport !== 'udp'),
    );
  if (!row) throw new UsageError(`${x.host}:${x.port} is not in catalog ${x.catalog}`);
  return row;
}

/** What an expectation rule can match on, for one result. */
export interface ExpectationKey {
  proxy: string;
  profile: string;
  endpoint: string;
  check: string;
  port?: number;
  kind?: string;
  mustNotInspect?: boolean;
  pinned?: boolean;
}

/**
 * Every expectation file must be about a proxy the run knows (`known`: the ids proxycheck can
 * start, plus the run's own adapters): one about a misspelt proxy would be silently dead.
 */
export function checkExpectationProxies(set: ScenarioSet, known: string[]): void {
  for (const proxy of set.expectations.keys()) {
    const def = set.proxies.get(proxy);
    if (def) {
      const file = set.expectationFiles?.get(proxy) ?? `expectations for ${proxy}`;
      throw new UsageError(
        `${file}: ${proxy} is a proxy definition (${def.file}); its expectations follow from its knobs, and what its engine does otherwise goes in its deviations`,
      );
    }
    if (!known.includes(proxy)) {
      const file = set.expectationFiles?.get(proxy) ?? `expectations for ${proxy}`;
      throw new UsageError(`${file}: /proxy "${proxy}" is not a proxy (known: ${known.join(', ')})`);
    }
  }
}
