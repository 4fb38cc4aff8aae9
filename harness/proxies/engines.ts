/**
 * A definition made real: its engine configured from its knobs; for path faults, a tunnel
 * lifetime on squid (which has no such timer) and a proxy that dies, a relay in front of it
 * (relay.ts); and around it the agent machine's network (`client`: harness/route/client-network.ts)
 * and its availability: a proxy that is refused, never answers or does not resolve starts no
 * engine at all (Unavailable below), only the address the agent is configured with.
 */
import { readFileSync } from 'node:fs';
import { dirname, resolve as resolvePath } from 'node:path';
import { UsageError } from '../errors.ts';
import { DEFAULT_LAB_NET, labAddress } from '../lab/addresses.ts';
import { onCleanup } from '../lifecycle.ts';
import { startClientNetwork } from '../route/client-network.ts';
import type { LoadedDefinition, ScenarioSet } from '../scenarios.ts';
import { startBlackhole } from './blackhole.ts';
import { ChainProxy } from './chain.ts';
import {
  type Availability,
  DEFAULT_HEADERS,
  describeDefinition,
  type ProxyDefinition,
  UNREACHABLE,
} from './definition.ts';
import { resolveDefinition } from './oracle.ts';
import { RelayFront } from './relay-front.ts';
import { SquidProxy } from './squid/squid.ts';
import type { Runtime } from './toolkit/runtime.ts';
import type { ProxyContext, ProxyUnderTest, StartedProxy } from './types.ts';

/** The port a configured-but-absent proxy is given (squid's). */
const ABSENT_PORT = 3128;

/** `{{proxy:<definition id>}}` in a proxy script: that proxy's host:port. */
const PAC_PROXY = /\{\{proxy:([a-z0-9][a-z0-9-]{0,62})\}\}/g;

/** The script a definition's client network serves, and the definitions it names. */
export function pacOf(def: LoadedDefinition): { file: string; text: string; proxies: string[] } | undefined {
  const name = def.client?.pacFile;
  if (!name) return undefined;
  const file = resolvePath(dirname(def.file), name);
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new UsageError(
      `${def.file}: client.pacFile ${name}: ${(err as NodeJS.ErrnoException).code ?? err}`,
    );
  }
  return { file, text, proxies: [...new Set([...text.matchAll(PAC_PROXY)].map((m) => m[1] as string))] };
}

export function engineFor(
  def: LoadedDefinition,
  set: ScenarioSet,
  runtime: Runtime = 'auto',
): ProxyUnderTest {
  let core = UNREACHABLE.has(def.availability ?? 'up') ? new Unavailable(def) : coreEngine(def, set, runtime);
  if (def.parent !== undefined) {
    const up = set.proxies.get(def.parent);
    if (!up) throw new UsageError(`${def.file}: parent ${def.parent} is not a definition`);
    if (up.id === def.id || up.parent || up.client || up.tls || (up.availability ?? 'up') !== 'up')
      throw new UsageError(
        `${def.file}: parent ${def.parent} must be another proxy that is up, with no parent, client network or tls of its own`,
      );
    if (UNREACHABLE.has(def.availability ?? 'up'))
      throw new UsageError(
        `${def.file}: parent needs a proxy that is there (availability ${def.availability})`,
      );
    core = new WithParent(core, coreEngine(up, set, runtime));
  }
  const pac = pacOf(def);
  const helpers = (pac?.proxies ?? []).map((id) => {
    const d = set.proxies.get(id);
    if (!d)
      throw new UsageError(
        `${def.file}: ${def.client?.pacFile} names {{proxy:${id}}}, which is not a definition`,
      );
    if (d.client || (d.availability ?? 'up') !== 'up' || pacOf(d))
      throw new UsageError(
        `${def.file}: ${def.client?.pacFile} names {{proxy:${id}}}: a proxy a script names must be up, with no client network of its own`,
      );
    return { id, engine: coreEngine(d, set, runtime) };
  });
  return new WithClientNetwork(def, core, helpers, pac);
}

function coreEngine(
  def: ProxyDefinition & { file: string },
  set: ScenarioSet,
  runtime: Runtime,
): ProxyUnderTest {
  const { allowed, inspectHosts } = resolveDefinition(def, set);
  const mode = def.inspection?.mode ?? 'none';
  const hosts = [...inspectHosts];
  const base = { id: def.id, summary: def.summary ?? describeDefinition(def) };
  const caSubject = def.inspection?.caSubject;
  let engine: ProxyUnderTest;
  // squid has no timer that cuts a tunnel at a fixed age: the relay in front does it
  let relayLifetime: number | undefined;
  if (def.engine === 'chain') {
    engine = new ChainProxy({
      ...base,
      auth: def.auth === 'basic',
      ...(def.availability === 'auth-loop' ? { authLoop: true } : {}),
      inspection: { mode, hosts },
      ...(caSubject ? { caSubject } : {}),
      ...(allowed ? { connectPorts: [...allowed] } : {}),
      ...(def.idleTimeoutSeconds !== undefined ? { idleTimeoutSeconds: def.idleTimeoutSeconds } : {}),
      ...(def.lifetimeSeconds !== undefined ? { lifetimeSeconds: def.lifetimeSeconds } : {}),
      ...(def.headers ? { headers: def.headers } : {}),
      ...(def.connectAnswer ? { connectAnswer: def.connectAnswer } : {}),
      ...(def.tls ? { tls: true } : {}),
    });
  } else {
    const headers = { ...DEFAULT_HEADERS.squid, ...def.headers };
    engine = new SquidProxy({
      ...base,
      runtime: runtime !== 'auto' ? runtime : (def.runtime ?? 'auto'),
      ...(caSubject ? { caSubject } : {}),
      policy: {
        connectPorts: allowed ? [...allowed].sort((a, b) => a - b) : 'any',
        auth: def.availability === 'auth-loop' ? 'loop' : (def.auth ?? 'none'),
        inspection: { mode, hosts },
        ...(def.idleTimeoutSeconds !== undefined ? { idleTimeoutSeconds: def.idleTimeoutSeconds } : {}),
        via: headers.via,
        xForwardedFor: headers.xForwardedFor,
        ...(def.tls ? { tls: true } : {}),
      },
    });
    relayLifetime = def.lifetimeSeconds;
  }
  const faults = def.faults && Object.keys(def.faults).length ? def.faults : undefined;
  const dies = def.availability === 'dies' ? def.diesAfterSeconds : undefined;
  if (!faults && relayLifetime === undefined && dies === undefined) return engine;
  return new RelayFront(engine, {
    ...(faults ? { faults } : {}),
    ...(relayLifetime !== undefined ? { lifetimeSeconds: relayLifetime } : {}),
    ...(dies !== undefined ? { diesAfterSeconds: dies } : {}),
  });
}

/**
 * A proxy the agent is configured with that is not there: nothing listens at its address
 * (`refused`: a lab address of its own, where nothing is bound), its SYN is never answered
 * (`blackhole`: blackhole.ts), or its name does not resolve on the machine (`unresolvable`).
 */
class Unavailable implements ProxyUnderTest {
  readonly id: string;
  constructor(private readonly def: LoadedDefinition) {
    this.id = def.id;
  }
  describe(): string {
    return this.def.summary ?? describeDefinition(this.def);
  }
  async start(ctx: ProxyContext): Promise<StartedProxy> {
    const t0 = performance.now();
    const state = this.def.availability as Availability;
    const net = ctx.lab?.net;
    const name = `proxy-${this.def.id}.down.proxycheck.test`;
    let host: string;
    let port = ABSENT_PORT;
    let stop = async () => {};
    let version: string;
    if (state === 'blackhole') {
      const hole = await startBlackhole({ host: '127.0.0.1' });
      const unregister = onCleanup(`blackhole ${this.def.id}`, () => hole.stop());
      host = hole.host;
      port = hole.port;
      stop = async () => {
        unregister();
        await hole.stop();
      };
      version = 'a listener that never accepts: the SYN is never answered';
    } else if (state === 'unresolvable') {
      host = name;
      version = `nothing: ${name} is not in the machine's name service`;
    } else {
      host = labAddress(name, net);
      version = `nothing listens at ${host}:${port}`;
    }
    return {
      id: this.def.id,
      kind: 'plain',
      runtime: 'not running',
      version,
      url: `http://${host}:${port}`,
      host,
      port,
      availability: state,
      startMs: Math.round(performance.now() - t0),
      stop,
    };
  }
}

/** A chain: the parent started first, then the child told where it is (ProxyContext.parent). */
class WithParent implements ProxyUnderTest {
  readonly id: string;
  constructor(
    private readonly child: ProxyUnderTest,
    private readonly parent: ProxyUnderTest,
  ) {
    this.id = child.id;
  }
  describe(): string {
    return this.child.describe();
  }
  async start(ctx: ProxyContext): Promise<StartedProxy> {
    const up = await this.parent.start(ctx);
    try {
      const child = await this.child.start({ ...ctx, parent: { id: up.id, host: up.host, port: up.port } });
      return {
        ...child,
        version: `${child.version} -> parent ${up.id} (${up.version})`,
        stop: async () => {
          await child.stop().catch(() => {});
          await up.stop();
        },
      };
    } catch (err) {
      await up.stop().catch(() => {});
      throw err;
    }
  }
}

/**
 * The proxy with the agent machine's network around it: the proxies its script names started
 * beside it, the script served with their addresses filled in, and the machine's name service.
 */
class WithClientNetwork implements ProxyUnderTest {
  readonly id: string;
  constructor(
    private readonly def: LoadedDefinition,
    private readonly core: ProxyUnderTest,
    private readonly helpers: Array<{ id: string; engine: ProxyUnderTest }>,
    private readonly pac: { file: string; text: string } | undefined,
  ) {
    this.id = def.id;
  }
  describe(): string {
    return this.core.describe();
  }
  async start(ctx: ProxyContext): Promise<StartedProxy> {
    const t0 = performance.now();
    const stops: Array<() => Promise<void>> = [];
    const stopAll = async () => {
      for (const s of stops.reverse()) await s().catch(() => {});
    };
    try {
      let text = this.pac?.text;
      const scriptProxies: Array<{ id: string; at: string }> = [];
      for (const h of this.helpers) {
        const started = await h.engine.start(ctx);
        stops.push(() => started.stop());
        scriptProxies.push({ id: h.id, at: `${started.host}:${started.port}` });
        text = text?.replaceAll(`{{proxy:${h.id}}}`, `${started.host}:${started.port}`);
      }
      const lab = ctx.lab;
      const client = await startClientNetwork(this.def.client, {
        resolve: (host) => lab?.addressOf(host),
        net: lab?.net ?? DEFAULT_LAB_NET,
        ...(text !== undefined ? { pacText: text } : {}),
        ...(this.pac ? { pacName: this.pac.file } : {}),
        proxyNames: new Map(scriptProxies.map((p) => [p.at, p.id])),
      });
      stops.push(() => client.stop());
      const core = await this.core.start(ctx);
      stops.push(() => core.stop());
      return {
        ...core,
        availability: core.availability ?? this.def.availability ?? 'up',
        client,
        ...(scriptProxies.length ? { scriptProxies } : {}),
        startMs: Math.round(performance.now() - t0),
        stop: stopAll,
      };
    } catch (err) {
      await stopAll();
      throw err;
    }
  }
}
