/**
 * A proxy is a definition: `scenarios/proxies/<id>.yaml` (schema: scenarios/schema/proxy.schema.json).
 * The knobs say what the proxy does; an engine honours them (`chain`: proxy-chain in this process;
 * `squid`: squid as a process or in a container), and the oracle (harness/oracle/) predicts every
 * check's outcome from them. What an engine really does otherwise than its knobs suggest is a
 * `deviation` of the definition, with its reason.
 *
 * A knob an engine cannot honour is a scenario error naming the engine and the knob (ENGINE_KNOBS).
 */
import type { ExpectationRule } from '../scenarios.ts';

export type Engine = 'chain' | 'squid';
export const ENGINES: Engine[] = ['chain', 'squid'];

/**
 * How the proxy authenticates agents: Basic, or the enterprise schemes (squid: digest_file_auth,
 * ntlm_fake_auth, which accepts any credentials, and negotiate_kerberos_auth with a lab KDC).
 */
export type AuthScheme = 'none' | 'basic' | 'digest' | 'ntlm' | 'negotiate';

export type InspectionMode = 'none' | 'all' | 'all-except' | 'only';

export interface InspectionKnob {
  mode: InspectionMode;
  /** The hosts `all-except` leaves alone, or the only ones `only` inspects (`{tenant}` allowed). */
  hosts?: string[];
  /** Adds every catalog host flagged must-not-inspect or pinned to `hosts`. */
  catalogHosts?: 'must-not-inspect';
  /** Subject of the inspection CA, e.g. `CN=Zscaler Intermediate Root CA, O=Zscaler Inc.`. */
  caSubject?: string;
}

export interface HeaderPolicy {
  /** Adds `Via` to forwarded requests (engine default: squid yes, chain no). */
  via?: boolean;
  /** Adds `X-Forwarded-For` to forwarded requests (engine default: squid yes, chain no). */
  xForwardedFor?: boolean;
  /** `consume` (default) or `forward`: a leaking proxy passes the agent's credentials on. */
  proxyAuthorization?: 'consume' | 'forward';
}

/** The answer to an accepted CONNECT (chain engine): `HTTP/1.1 200 Connection Established` by default. */
export interface ConnectAnswer {
  version?: 'HTTP/1.0' | 'HTTP/1.1';
  status?: number;
  statusText?: string;
  /** Extra header lines, in order. */
  headers?: Array<[string, string]>;
}

/** Path faults: a relay in front of the engine does them to every connection (any engine). */
export interface PathFaults {
  /** Added to every chunk, each way, order kept. */
  latencyMs?: number;
  /** Each way, per connection. */
  bandwidthBytesPerSecond?: number;
  /** Every chunk is written in pieces of at most this many bytes, each its own write. */
  splitWritesBytes?: number;
  /** The connection is reset (RST both ways) once this many bytes went through it, both ways counted. */
  resetAfterBytes?: number;
  /** After this long the path forwards nothing more, both sockets left open. */
  silenceAfterSeconds?: number;
}

/**
 * Whether the proxy is there for the agent: `up`; `refused` (nothing listens at its address);
 * `blackhole` (the TCP SYN is never answered: harness/proxies/blackhole.ts); `unresolvable` (its
 * host name does not resolve); `auth-loop` (407 to every credential); `dies` (it dies
 * `diesAfterSeconds` after it started, cutting every tunnel, and refuses from then on).
 */
export type Availability = 'up' | 'refused' | 'blackhole' | 'unresolvable' | 'auth-loop' | 'dies';

/** Availability states in which nothing of the engine runs: the agent never reaches a proxy. */
export const UNREACHABLE: ReadonlySet<Availability> = new Set(['refused', 'blackhole', 'unresolvable']);

/**
 * The agent machine's network around the proxy (harness/route/client-network.ts): how "auto
 * detect" finds a route when the proxy cannot be reached, and whether the firewall lets the
 * machine go DIRECT.
 */
export interface ClientNetworkKnob {
  /** none: no proxy script (DIRECT); wpad: wpad.<dnsSuffix>/wpad.dat; pac: the script at pacUrl. */
  autoDetect?: 'none' | 'wpad' | 'pac';
  /** The machine's DNS suffix (DHCP option 15), where WPAD looks (default DEFAULT_DNS_SUFFIX). */
  dnsSuffix?: string;
  /** The proxy script the lab serves, beside the definition; `{{proxy:<id>}}` becomes that proxy's host:port. */
  pacFile?: string;
  /** autoDetect pac: where the agent fetches its proxy script. */
  pacUrl?: string;
  /** allowed (default) or blocked: whether the machine may reach the internet without a proxy. */
  direct?: 'allowed' | 'blocked';
}

/** The name an HTTPS proxy's certificate is for (the agent sends it as SNI and checks it). */
export function proxyTlsName(id: string): string {
  return `${id}.proxy.proxycheck.test`;
}

/** The lab machine's DNS suffix: WPAD asks for wpad.proxycheck.test. */
export const DEFAULT_DNS_SUFFIX = 'proxycheck.test';

export interface ProxyDefinition {
  id: string;
  summary?: string;
  engine: Engine;
  /** squid only: where it runs (default auto: process when squid is installed, else container). */
  runtime?: 'auto' | 'process' | 'container';
  /** CONNECT allowed to these ports only; `any`; or `catalog` (every port our catalogs name). */
  connectPorts?: number[] | 'any' | 'catalog';
  auth?: AuthScheme;
  inspection?: InspectionKnob;
  /** The proxy closes a tunnel that has been silent this long. */
  idleTimeoutSeconds?: number;
  /** The proxy closes a tunnel this long after it opened, traffic or not. */
  lifetimeSeconds?: number;
  headers?: HeaderPolicy;
  connectAnswer?: ConnectAnswer;
  faults?: PathFaults;
  /**
   * An HTTPS proxy: the agent speaks TLS to the proxy itself (squid `https_port`), with a
   * certificate for the proxy's name (proxyTlsName) issued by the lab CA, which the agent checks.
   */
  tls?: boolean;
  /**
   * A proxy chain: this proxy forwards everything to the definition with this id (started beside
   * it; squid: `cache_peer … parent` with `never_direct allow all`).
   */
  parent?: string;
  /** Whether the proxy is there at all (default up). */
  availability?: Availability;
  /** availability dies: real seconds after the proxy started. */
  diesAfterSeconds?: number;
  /** The agent machine's network: auto detect and DIRECT (default: no auto detect source, DIRECT allowed). */
  client?: ClientNetworkKnob;
  /** Where the engine really behaves otherwise than its knobs suggest; first match wins. */
  deviations?: ExpectationRule[];
}

/** Default CONNECT ports per engine: proxy-chain tunnels anywhere; Debian's squid.conf allows 443 only. */
export const DEFAULT_CONNECT_PORTS: Record<Engine, ProxyDefinition['connectPorts']> = {
  chain: 'any',
  squid: [443],
};

/** Header defaults per engine, as the engine behaves untouched. */
export const DEFAULT_HEADERS: Record<Engine, Required<HeaderPolicy>> = {
  chain: { via: false, xForwardedFor: false, proxyAuthorization: 'consume' },
  squid: { via: true, xForwardedFor: true, proxyAuthorization: 'consume' },
};

const KNOBS = [
  'runtime',
  'connectPorts',
  'auth',
  'auth.digest',
  'auth.ntlm',
  'auth.negotiate',
  'inspection',
  'inspection.caSubject',
  'idleTimeoutSeconds',
  'lifetimeSeconds',
  'headers.via',
  'headers.xForwardedFor',
  'headers.proxyAuthorization',
  'connectAnswer',
  'faults',
  'availability.auth-loop',
  'tls',
  'parent',
] as const;
type Knob = (typeof KNOBS)[number];

/** An engine that honours every knob but these, each with the reason it cannot. */
function allBut(cannot: Partial<Record<Knob, string>>): Partial<Record<Knob, true | string>> {
  return Object.fromEntries(KNOBS.map((k) => [k, cannot[k] ?? true]));
}

/**
 * What each engine honours, and why not where it does not (a knob missing from an engine's table
 * is not honoured). `faults` and, on squid, `lifetimeSeconds` are done by the relay in front of the
 * engine (harness/proxies/relay.ts).
 */
export const ENGINE_KNOBS: Record<Engine, Partial<Record<Knob, true | string>>> = {
  chain: allBut({
    runtime: 'the in-process engine has no runtime to choose (it runs in this process)',
    'auth.digest': 'proxy-chain authenticates with Basic only',
    'auth.ntlm': 'proxy-chain authenticates with Basic only',
    'auth.negotiate': 'proxy-chain authenticates with Basic only',
  }),
  squid: allBut({
    'headers.proxyAuthorization':
      'squid consumes Proxy-Authorization and has no setting that passes it on to the origin',
    connectAnswer: 'squid writes its own CONNECT answer ("HTTP/1.1 200 Connection established")',
  }),
};

/** The knobs a definition sets (those with a value other than absent). */
export function knobsSet(d: ProxyDefinition): Knob[] {
  const k: Knob[] = [];
  if (d.runtime !== undefined) k.push('runtime');
  if (d.connectPorts !== undefined) k.push('connectPorts');
  if (d.auth !== undefined && d.auth !== 'none') k.push('auth');
  if (d.auth === 'digest' || d.auth === 'ntlm' || d.auth === 'negotiate') k.push(`auth.${d.auth}`);
  if (d.inspection && d.inspection.mode !== 'none') k.push('inspection');
  if (d.inspection?.caSubject !== undefined) k.push('inspection.caSubject');
  if (d.idleTimeoutSeconds !== undefined) k.push('idleTimeoutSeconds');
  if (d.lifetimeSeconds !== undefined) k.push('lifetimeSeconds');
  if (d.headers?.via !== undefined) k.push('headers.via');
  if (d.headers?.xForwardedFor !== undefined) k.push('headers.xForwardedFor');
  if (d.headers?.proxyAuthorization === 'forward') k.push('headers.proxyAuthorization');
  if (d.connectAnswer !== undefined) k.push('connectAnswer');
  if (d.faults !== undefined && Object.keys(d.faults).length) k.push('faults');
  if (d.availability === 'auth-loop') k.push('availability.auth-loop');
  if (d.tls) k.push('tls');
  if (d.parent !== undefined) k.push('parent');
  return k;
}

/** The first knob the engine cannot honour, as `engine squid cannot honour connectAnswer: why`. */
export function unsupportedKnob(d: ProxyDefinition): string | undefined {
  const table = ENGINE_KNOBS[d.engine];
  for (const knob of knobsSet(d)) {
    const ok = table[knob];
    if (ok !== true) return `engine ${d.engine} cannot honour ${knob}${ok ? `: ${ok}` : ''}`;
  }
  const insp = d.inspection;
  if (
    insp &&
    (insp.mode === 'all-except' || insp.mode === 'only') &&
    !insp.hosts?.length &&
    !insp.catalogHosts
  )
    return `inspection mode ${insp.mode} needs hosts (or catalogHosts)`;
  if (insp && (insp.mode === 'all' || insp.mode === 'none') && (insp.hosts?.length || insp.catalogHosts))
    return `inspection mode ${insp.mode} takes no hosts (use all-except or only)`;
  if (insp && insp.mode === 'none' && insp.caSubject !== undefined)
    return 'inspection.caSubject needs an inspecting mode (all, all-except or only)';
  if ((d.availability === 'dies') !== (d.diesAfterSeconds !== undefined))
    return d.availability === 'dies'
      ? 'availability dies needs diesAfterSeconds'
      : 'diesAfterSeconds needs availability: dies';
  if (d.tls && d.inspection && d.inspection.mode !== 'none')
    return d.engine === 'squid'
      ? 'engine squid cannot honour tls with inspection: squid 5.7 refuses ssl-bump on an https_port (FATAL)'
      : "engine chain cannot honour tls with inspection: proxycheck's interceptor is not wired behind an HTTPS listener";
  if (d.engine === 'chain' && d.parent !== undefined && d.inspection && d.inspection.mode !== 'none')
    return 'engine chain cannot honour parent with inspection: the intercepting proxy re-originates TLS to the origin itself, not through the parent';
  if (d.engine === 'chain' && d.parent !== undefined && d.headers?.proxyAuthorization === 'forward')
    return 'engine chain cannot honour parent with headers.proxyAuthorization forward: the leaking forwarder sends requests itself, not through the parent';
  if (d.tls && UNREACHABLE.has(d.availability ?? 'up'))
    return `tls needs a proxy that is there (availability ${d.availability} starts none)`;
  if (d.availability === 'auth-loop' && d.auth !== undefined && d.auth !== 'none')
    return 'availability auth-loop asks for credentials and rejects them all: leave auth out';
  const c = d.client;
  if (c?.autoDetect === 'pac' && !c.pacUrl) return 'client.autoDetect pac needs client.pacUrl';
  if (c?.pacUrl && c.autoDetect !== 'pac') return 'client.pacUrl needs client.autoDetect: pac';
  if (c?.pacFile && (c.autoDetect ?? 'none') === 'none')
    return 'client.pacFile needs client.autoDetect wpad or pac (with none, auto detect finds no script)';
  return undefined;
}

/** Whether the definition inspects TLS to `host` (lower-case, tenant resolved), given its resolved hosts. */
export function inspects(mode: InspectionMode | undefined, hosts: Set<string>, host: string): boolean {
  const h = host.toLowerCase();
  switch (mode ?? 'none') {
    case 'all':
      return true;
    case 'all-except':
      return !hosts.has(h);
    case 'only':
      return hosts.has(h);
    default:
      return false;
  }
}

/** The CONNECT ports a definition allows: `undefined` for any. */
export function allowedPorts(d: ProxyDefinition, catalogPorts: () => number[]): Set<number> | undefined {
  const c = d.connectPorts ?? DEFAULT_CONNECT_PORTS[d.engine];
  if (c === 'any') return undefined;
  if (c === 'catalog') return new Set(catalogPorts());
  return new Set(c);
}

/** One line saying what a definition does, for one without a summary. */
export function describeDefinition(d: ProxyDefinition): string {
  const parts: string[] = [d.engine === 'chain' ? 'proxy-chain in process' : 'squid'];
  if (d.tls) parts.push('HTTPS proxy (TLS to the proxy)');
  if (d.parent) parts.push(`forwards to parent ${d.parent}`);
  const ports = d.connectPorts ?? DEFAULT_CONNECT_PORTS[d.engine];
  parts.push(
    ports === 'any'
      ? 'CONNECT to any port'
      : ports === 'catalog'
        ? 'CONNECT to the catalog ports'
        : `CONNECT to ${(ports ?? []).join(', ')}`,
  );
  if (d.auth && d.auth !== 'none') parts.push(`${d.auth} auth`);
  const i = d.inspection;
  if (i && i.mode !== 'none') {
    const n = (i.hosts?.length ?? 0) + (i.catalogHosts ? 1 : 0);
    const which =
      i.mode === 'all'
        ? 'inspects all'
        : i.mode === 'only'
          ? `inspects only ${n} host(s)`
          : `inspects all but ${i.catalogHosts ? 'the must-not-inspect catalog hosts' : `${n} host(s)`}`;
    parts.push(`${which}${i.caSubject ? ` (CA "${i.caSubject}")` : ''}`);
  }
  if (d.idleTimeoutSeconds !== undefined) parts.push(`idle timeout ${d.idleTimeoutSeconds} s`);
  if (d.lifetimeSeconds !== undefined) parts.push(`tunnel lifetime ${d.lifetimeSeconds} s`);
  if (d.headers?.proxyAuthorization === 'forward') parts.push('forwards Proxy-Authorization');
  if (d.connectAnswer) parts.push('own CONNECT answer');
  const a = d.availability ?? 'up';
  if (a !== 'up') parts.unshift(a === 'dies' ? `dies after ${d.diesAfterSeconds} s` : a);
  const c = d.client;
  if (c?.autoDetect && c.autoDetect !== 'none') parts.push(`auto detect: ${c.autoDetect}`);
  if (c?.direct === 'blocked') parts.push('DIRECT blocked');
  return parts.join(', ');
}
