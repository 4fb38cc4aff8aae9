/**
 * From a name on the command line to a proxy to start: a definition of the scenario set
 * (`scenarios/proxies/<id>.yaml`), a definition file given by path, or a product registered in code
 * (`registerProxyKind`, docs/extending.md). Definitions become an engine (engines.ts).
 */
import { UsageError } from '../errors.ts';
import { loadDefinitionFile, loadScenarios, type ScenarioSet } from '../scenarios.ts';
import { describeDefinition } from './definition.ts';
import { engineFor } from './engines.ts';
import type { Runtime } from './toolkit/runtime.ts';
import type { ProxyUnderTest } from './types.ts';

export interface ProxyKindInfo {
  id: string;
  summary: string;
  create(opts: { runtime: Runtime }): ProxyUnderTest;
}

/** Products registered in code, beside the definitions. */
export const PROXY_KINDS: ProxyKindInfo[] = [];

/** What `proxycheck run` starts when no --proxies is given. */
export const DEFAULT_PROXIES = [
  'chain-plain',
  'chain-auth',
  'chain-mitm',
  'down-direct',
  'down-pac',
  'down-closed',
  'blackhole-direct',
];

/**
 * Registers a proxy product defined elsewhere (an adapter plus its config renderer, see
 * docs/extending.md); its id must be new. Returns its removal.
 */
export function registerProxyKind(info: ProxyKindInfo): () => void {
  if (PROXY_KINDS.some((k) => k.id === info.id)) throw new Error(`proxy ${info.id} is already registered`);
  PROXY_KINDS.push(info);
  return () => {
    const i = PROXY_KINDS.indexOf(info);
    if (i >= 0) PROXY_KINDS.splice(i, 1);
  };
}

/** Every proxy a name can start: the set's definitions, then products registered in code. */
export function proxyCatalog(set: ScenarioSet = loadScenarios()): Array<{ id: string; summary: string }> {
  return [
    ...[...set.proxies.values()].map((d) => ({ id: d.id, summary: d.summary ?? describeDefinition(d) })),
    ...PROXY_KINDS.map((k) => ({ id: k.id, summary: k.summary })),
  ];
}

/** The ids of every proxy a name can start. */
export function proxyIds(set: ScenarioSet = loadScenarios()): string[] {
  return proxyCatalog(set).map((p) => p.id);
}

/** `./customer-x.yaml`, `/abs/path.yml` or `dir/x.yaml`: a definition given as a file. */
export function isDefinitionPath(ref: string): boolean {
  return /\.ya?ml$/i.test(ref) || ref.includes('/');
}

/**
 * The proxy a name stands for. A definition file is added to the set (so its predictions and
 * deviations apply); its id must not be another definition's.
 */
export function proxyById(
  ref: string,
  opts: { runtime?: Runtime; scenarios?: ScenarioSet } = {},
): ProxyUnderTest {
  const set = opts.scenarios ?? loadScenarios();
  const runtime = opts.runtime ?? 'auto';
  const coded = PROXY_KINDS.find((k) => k.id === ref);
  if (coded) return coded.create({ runtime });
  if (isDefinitionPath(ref)) {
    const def = loadDefinitionFile(ref, set);
    const seen = set.proxies.get(def.id);
    if (seen && seen.file !== def.file)
      throw new UsageError(`${ref}: /id "${def.id}" is already defined in ${seen.file}`);
    set.proxies.set(def.id, def);
    return engineFor(def, set, runtime);
  }
  const def = set.proxies.get(ref);
  if (!def)
    throw new UsageError(`unknown proxy "${ref}" (known: ${proxyIds(set).join(', ')}, or a definition file)`);
  return engineFor(def, set, runtime);
}
