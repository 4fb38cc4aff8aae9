/**
 * The one place squid configurations are written. Every squid is a policy (SquidPolicy: CONNECT
 * ports, auth, inspection, idle timeout, Via / X-Forwarded-For) on top of a common,
 * private-instance base. The flavours are named policies (FLAVOUR_POLICIES):
 *
 *  - squid-default: Debian's stock policy (squid.conf as shipped in bookworm): Safe_ports,
 *    `acl SSL_ports port 443` and `http_access deny CONNECT !SSL_ports`, localhost only.
 *  - squid-open:    CONNECT allowed to every port our catalogs name (`acl allowed_ports`; Debian's
 *                   Safe_ports kept, which lets every catalog port through).
 *  - squid-auth:    basic_ncsa_auth with an htpasswd generated per run (`$apr1$` hashes).
 *  - squid-bump:    `ssl_bump peek step1` + `bump all`, leaves signed by the corporate inspection
 *                   CA, re-originated TLS verified against the lab root.
 *  - squid-splice:  as bump, but `ssl_bump splice` for every catalog host that must not be inspected
 *                   (or is pinned).
 *
 * Auth `loop` (no flavour; a policy only) asks for Basic credentials and rejects every one: its
 * helper (AUTH_LOOP_HELPER, a shell script written next to squid.conf) answers ERR to every line,
 * so an agent that sends credentials gets 407 again, on the same connection too.
 *
 * A port list other than the stock one replaces only `SSL_ports` (`acl allowed_ports`); `any`
 * drops the CONNECT port rule; Debian's Safe_ports rules stay in every case. Inspection `only`
 * bumps the listed hosts and splices the rest.
 *
 * Name resolution never leaves loopback: squid reads lab hosts from a generated `hosts_file` and
 * sends any other query to 127.0.0.1 only (`dns_nameservers 127.0.0.1`). With no resolver there a
 * name outside the lab would hang for squid's default 30 s `dns_timeout`; we cap it at 3 s, so such
 * a CONNECT fails fast with `500 ERR_CANNOT_FORWARD` instead of running into the client's deadline.
 * (An NXDOMAIN responder on 127.0.0.1:53 would answer in milliseconds but needs port 53 and root;
 * squid cannot be pointed at another port.) Lab hosts are always in the hosts file.
 */
import { resolveHost, type ScenarioSet } from '../../scenarios.ts';
import { authAccessLines, type EnterpriseScheme, HELPER } from './auth-schemes.ts';
import { idleTimeoutLines } from './idle-timeout.ts';

export { AUTH_LOOP_HELPER, AUTH_LOOP_HELPER_FILE } from './auth-schemes.ts';

export const SQUID_FLAVOURS = ['default', 'open', 'auth', 'bump', 'splice'] as const;
export type SquidFlavour = (typeof SQUID_FLAVOURS)[number];

/** squid's readiness line; bump ports say "Accepting SSL bumped HTTP Socket connections". */
export const SQUID_READY = /Accepting (SSL bumped )?HTTPS? Socket connections/;
/** First line of a start: `Starting Squid Cache version 5.7 for x86_64-pc-linux-gnu...`. */
export const SQUID_VERSION_LINE = /Starting Squid Cache version (\S+?)(?: for |\.\.\.|\s|$)/;

/** Paths as squid sees them (host paths for a process, container paths for a container). */
export interface SquidPaths {
  /** `none` (container: nothing to clean up) or a file. */
  pidFile: string;
  cacheLog: string;
  /** e.g. `stdio:/path/access.log` or `none`. */
  accessLog: string;
  coredumpDir: string;
  hostsFile: string;
  /** Directory of squid's helpers (`basic_ncsa_auth`, `security_file_certgen`). */
  helperDir: string;
  /** squid-auth */
  htpasswd?: string;
  /** Auth digest / ntlm / negotiate: the helper's arguments after its program (auth-schemes.ts). */
  authHelperArgs?: string;
  /** Auth `loop`: the helper that rejects everything (AUTH_LOOP_HELPER, executable). */
  authLoopHelper?: string;
  /** squid-bump / squid-splice: signing CA certificate and key (PEM), origin trust bundle, cert db. */
  signingCert?: string;
  signingKey?: string;
  originCa?: string;
  sslDb?: string;
  /** An HTTPS proxy (policy.tls): its own certificate and key (PEM) for https_port. */
  proxyCert?: string;
  proxyKey?: string;
}

/**
 * What a squid instance does: the knobs of a proxy definition (../definition.ts) resolved for
 * squid. Every flavour is a named policy (FLAVOUR_POLICIES).
 */
export interface SquidPolicy {
  /**
   * CONNECT allowed to these ports only, or 'any' (Debian's Safe_ports rules stay in both cases).
   * 'stock' = Debian's `acl SSL_ports port 443` + `http_access deny CONNECT !SSL_ports`.
   */
  connectPorts: number[] | 'any' | 'stock';
  /**
   * `basic`: basic_ncsa_auth, per-run credentials; `loop`: Basic asked for, every credential
   * rejected; `digest`, `ntlm`, `negotiate`: auth-schemes.ts.
   */
  auth: 'none' | 'basic' | 'loop' | EnterpriseScheme;
  /** `hosts`: lower-case, tenant resolved (spliced for `all-except`, the only ones bumped for `only`). */
  inspection: { mode: 'none' | 'all' | 'all-except' | 'only'; hosts: string[] };
  /** Close a tunnel (spliced/plain CONNECT) or a bumped connection that has been silent this long. */
  idleTimeoutSeconds?: number;
  /** squid's `via` (default on): false writes `via off`. */
  via?: boolean;
  /** squid's `forwarded_for` (default on): false writes `forwarded_for delete`. */
  xForwardedFor?: boolean;
  /** An HTTPS proxy: `https_port` with paths.proxyCert (squid 5.7 refuses ssl-bump on it). */
  tls?: boolean;
  /** A chain: everything goes to this parent proxy (`cache_peer … parent`, `never_direct allow all`). */
  parent?: { id: string; host: string; port: number };
}

interface SquidConfigCommon {
  port: number;
  /** Listen address; always loopback. */
  host?: string;
  paths: SquidPaths;
  /** Seconds squid waits for clients on shutdown (short: runs stop it often). */
  shutdownLifetimeS?: number;
  dnsTimeoutS?: number;
  /** The proxy id, for the header comment and errors (default `squid-<flavour>`, or `squid`). */
  label?: string;
}

/**
 * A policy, or (convenience for callers that predate policies) a flavour with the scenario-derived
 * lists it needs: squid-open's `connectPorts`, squid-splice's `spliceHosts`.
 */
export type SquidConfigInput = SquidConfigCommon &
  (
    | { policy: SquidPolicy; flavour?: SquidFlavour }
    | {
        flavour: SquidFlavour;
        policy?: undefined;
        /** squid-open: ports CONNECT may reach (every port in our catalogs). */
        connectPorts?: number[];
        /** squid-splice: hosts spliced (never bumped). */
        spliceHosts?: string[];
      }
  );

/** A flavour's policy; the lists are asked for only by the flavours that use them. */
function flavourPolicy(
  flavour: SquidFlavour,
  connectPorts: () => number[],
  spliceHosts: () => string[],
): SquidPolicy {
  const none = { mode: 'none' as const, hosts: [] };
  switch (flavour) {
    case 'default':
      return { connectPorts: 'stock', auth: 'none', inspection: none };
    case 'open': {
      const ports = connectPorts();
      if (!ports.length) throw new Error('squid-open config needs connectPorts');
      return { connectPorts: ports, auth: 'none', inspection: none };
    }
    case 'auth':
      return { connectPorts: 'stock', auth: 'basic', inspection: none };
    case 'bump':
      return { connectPorts: 'stock', auth: 'none', inspection: { mode: 'all', hosts: [] } };
    case 'splice': {
      const hosts = spliceHosts();
      if (!hosts.length) throw new Error('squid-splice config needs spliceHosts');
      return { connectPorts: 'stock', auth: 'none', inspection: { mode: 'all-except', hosts } };
    }
  }
}

/**
 * The flavours as named policies, given the run's scenarios: default = stock ports, no auth, no
 * inspection; open = CONNECT to every catalog port; auth = stock + basic; bump = stock + inspect
 * all; splice = stock + inspect all except the must-not-inspect (or pinned) catalog hosts.
 */
export const FLAVOUR_POLICIES = Object.fromEntries(
  SQUID_FLAVOURS.map((f) => [
    f,
    (set: ScenarioSet) =>
      flavourPolicy(
        f,
        () => catalogPorts(set),
        () => spliceHostsOf(set),
      ),
  ]),
) as Record<SquidFlavour, (set: ScenarioSet) => SquidPolicy>;

/** The policy a config input stands for (a flavour maps with the lists it was given). */
export function policyOf(input: SquidConfigInput): SquidPolicy {
  if (input.policy) return input.policy;
  return flavourPolicy(
    input.flavour,
    () => input.connectPorts ?? [],
    () => input.spliceHosts ?? [],
  );
}

/** Whether squid bumps anything under `policy` (then it needs the ssl-bump port, CA and cert db). */
export function policyBumps(policy: SquidPolicy): boolean {
  return policy.inspection.mode !== 'none';
}

/** One line saying what a policy does, for a proxy without a summary of its own. */
export function describePolicy(policy: SquidPolicy): string {
  const parts: string[] = [];
  const c = policy.connectPorts;
  parts.push(
    c === 'stock'
      ? "Debian's stock policy (CONNECT only to port 443)"
      : c === 'any'
        ? 'CONNECT to any port'
        : `CONNECT only to ${c.length === 1 ? 'port' : 'ports'} ${c.join(', ')}`,
  );
  if (policy.auth === 'basic') parts.push('basic_ncsa_auth');
  if (policy.auth === 'loop') parts.push('Basic auth that rejects every credential (407 again and again)');
  if (policy.auth !== 'none' && policy.auth !== 'basic' && policy.auth !== 'loop')
    parts.push(HELPER[policy.auth]);
  const { mode, hosts } = policy.inspection;
  if (mode === 'all') parts.push('ssl_bump: bump all');
  if (mode === 'all-except') parts.push(`ssl_bump: bump all but ${countHosts(hosts)} (spliced)`);
  if (mode === 'only') parts.push(`ssl_bump: bump only ${countHosts(hosts)}, splice the rest`);
  if (policy.idleTimeoutSeconds !== undefined) parts.push(`idle timeout ${policy.idleTimeoutSeconds} s`);
  if (policy.via === false) parts.push('no Via');
  if (policy.xForwardedFor === false) parts.push('no X-Forwarded-For');
  return `squid 5, ${parts.join(', ')}`;
}

function countHosts(hosts: string[]): string {
  return hosts.length === 1 ? (hosts[0] as string) : `${hosts.length} hosts`;
}

/** Every port any catalog names, sorted (squid-open's CONNECT allow-list). */
/** The TCP ports agents open (agent-scope rows): what squid-open allows CONNECT to. */
export function catalogPorts(set: ScenarioSet): number[] {
  const ports = new Set<number>();
  for (const c of set.catalogs.values()) {
    for (const e of c.endpoints) if (e.scope !== 'out-of-scope' && e.transport !== 'udp') ports.add(e.port);
  }
  return [...ports].sort((a, b) => a - b);
}

/** Every catalog host (tenant resolved) flagged must-not-inspect or pinned: squid-splice's list. */
export function spliceHostsOf(set: ScenarioSet): string[] {
  const hosts = new Set<string>();
  for (const c of set.catalogs.values()) {
    for (const e of c.endpoints) {
      if (e.mustNotInspect || e.pinned) hosts.add(resolveHost(e.host, set).toLowerCase());
    }
  }
  return [...hosts].sort();
}

function need(value: string | undefined, what: string, label: string): string {
  if (!value) throw new Error(`${label} config needs ${what}`);
  return value;
}

/** squid refuses spaces in most path arguments; our paths never have them, but fail loudly if so. */
function p(path: string): string {
  if (/\s/.test(path)) throw new Error(`squid config path has whitespace: ${path}`);
  return path;
}

function chunk<T>(items: T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

/** Debian bookworm's stock Safe_ports (kept under every policy: `deny !Safe_ports` also applies to CONNECT). */
const SAFE_PORTS = [
  'acl Safe_ports port 80 # http',
  'acl Safe_ports port 21 # ftp',
  'acl Safe_ports port 443 # https',
  'acl Safe_ports port 70 # gopher',
  'acl Safe_ports port 210 # wais',
  'acl Safe_ports port 1025-65535 # unregistered ports',
  'acl Safe_ports port 280 # http-mgmt',
  'acl Safe_ports port 488 # gss-http',
  'acl Safe_ports port 591 # filemaker',
  'acl Safe_ports port 777 # multiling http',
];

export function squidConfig(input: SquidConfigInput): string {
  const { paths } = input;
  const policy = policyOf(input);
  const label = input.label ?? (input.flavour ? `squid-${input.flavour}` : 'squid');
  const host = input.host ?? '127.0.0.1';
  const bumping = policyBumps(policy);
  const lines: string[] = [`# generated by proxycheck: ${label}`, ''];
  const add = (...l: string[]) => lines.push(...l);

  // --- listening port --------------------------------------------------------------------------
  if (policy.tls) {
    if (bumping) throw new Error(`${label}: squid cannot bump on an https_port (FATAL in squid 5.7)`);
    const cert = p(need(paths.proxyCert, 'proxyCert', label));
    const key = p(need(paths.proxyKey, 'proxyKey', label));
    // squid 5 generates host certificates by default, which wants a CA as tls-cert: off, a leaf serves
    add(`https_port ${host}:${input.port} tls-cert=${cert} tls-key=${key} generate-host-certificates=off`);
  } else if (bumping) {
    add(
      `http_port ${host}:${input.port} ssl-bump` +
        ` tls-cert=${p(need(paths.signingCert, 'signingCert', label))}` +
        ` tls-key=${p(need(paths.signingKey, 'signingKey', label))}` +
        ' generate-host-certificates=on dynamic_cert_mem_cache_size=4MB',
    );
  } else {
    add(`http_port ${host}:${input.port}`);
  }

  // --- private instance ------------------------------------------------------------------------
  add(
    '',
    '# private instance: own pid file and logs, memory only, nothing cached',
    `pid_filename ${p(paths.pidFile)}`,
    `cache_log ${p(paths.cacheLog)}`,
    `access_log ${p(paths.accessLog)}`,
    `coredump_dir ${p(paths.coredumpDir)}`,
    'logfile_rotate 0',
    'cache deny all',
    'pinger_enable off',
    // a chain's child needs a name of its own: its parent takes its own name in Via for a loop
    `visible_hostname proxycheck-squid${policy.parent ? '-child' : ''}`,
    `shutdown_lifetime ${input.shutdownLifetimeS ?? 1} seconds`,
    '',
    '# names: lab hosts from the hosts file; any other query goes to loopback only, and gives up fast',
    `hosts_file ${p(paths.hostsFile)}`,
    'dns_nameservers 127.0.0.1',
    `dns_timeout ${input.dnsTimeoutS ?? 3} seconds`,
    'dns_retransmit_interval 1 seconds',
  );

  // --- policy ----------------------------------------------------------------------------------
  // Debian bookworm's stock squid.conf access rules (localhost, manager and CONNECT are
  // predefined ACLs in squid 5 and must not be redeclared); a port list or `any` replaces only
  // the SSL_ports rule.
  add('', `# policy: ${label}`);
  const ports = policy.connectPorts;
  if (ports === 'stock') {
    add(
      'acl SSL_ports port 443',
      ...SAFE_PORTS,
      'http_access deny !Safe_ports',
      'http_access deny CONNECT !SSL_ports',
    );
  } else if (ports === 'any') {
    add(...SAFE_PORTS, '# CONNECT to any port (Safe_ports still applies)', 'http_access deny !Safe_ports');
  } else {
    if (!ports.length) throw new Error(`${label} config needs connectPorts (at least one port)`);
    add(...SAFE_PORTS, '# CONNECT to these ports only');
    for (const group of chunk(ports, 16)) add(`acl allowed_ports port ${group.join(' ')}`);
    add('http_access deny !Safe_ports', 'http_access deny CONNECT !allowed_ports');
  }
  add('http_access allow localhost manager', 'http_access deny manager');

  const a = policy.auth;
  const program =
    a === 'basic'
      ? `${p(paths.helperDir)}/basic_ncsa_auth ${p(need(paths.htpasswd, 'htpasswd', label))}`
      : a === 'loop'
        ? p(need(paths.authLoopHelper, 'authLoopHelper', label))
        : a === 'none'
          ? ''
          : `${p(paths.helperDir)}/${HELPER[a]} ${paths.authHelperArgs ?? ''}`.trim();
  add(...authAccessLines(a, program));

  if (bumping) {
    add(
      '',
      '# TLS interception: leaves from the corporate inspection CA, origins verified against the lab root',
      `sslcrtd_program ${p(paths.helperDir)}/security_file_certgen -s ${p(need(paths.sslDb, 'sslDb', label))} -M 4MB`,
      'sslcrtd_children 2 startup=1 idle=1',
      `tls_outgoing_options cafile=${p(need(paths.originCa, 'originCa', label))}`,
      'acl step1 at_step SslBump1',
    );
    const { mode, hosts } = policy.inspection;
    if (mode === 'all-except') {
      if (!hosts.length) throw new Error(`${label} config needs hosts to splice (inspection all-except)`);
      add('# catalog hosts that must not be inspected (or are pinned) are spliced, never bumped');
      for (const group of chunk(hosts, 8)) add(`acl no_inspect ssl::server_name ${group.join(' ')}`);
      add('ssl_bump peek step1', 'ssl_bump splice no_inspect', 'ssl_bump bump all');
    } else if (mode === 'only') {
      if (!hosts.length) throw new Error(`${label} config needs hosts to inspect (inspection only)`);
      add('# only these hosts are bumped; every other one is spliced');
      for (const group of chunk(hosts, 8)) add(`acl inspect_hosts ssl::server_name ${group.join(' ')}`);
      add('ssl_bump peek step1', 'ssl_bump bump inspect_hosts', 'ssl_bump splice all');
    } else {
      add('ssl_bump peek step1', 'ssl_bump bump all');
    }
  }

  // --- knobs -----------------------------------------------------------------------------------
  const idle = policy.idleTimeoutSeconds;
  if (idle !== undefined) {
    if (!(Number.isInteger(idle) && idle > 0))
      throw new Error(`${label} config: idleTimeoutSeconds must be a positive whole number, not ${idle}`);
    add('', ...idleTimeoutLines(idle));
  }
  if (policy.via === false || policy.xForwardedFor === false) add('', '# headers on forwarded requests');
  if (policy.via === false) add('via off');
  if (policy.xForwardedFor === false) add('forwarded_for delete');
  const up = policy.parent;
  if (up) {
    add('', `# a chain: everything to parent ${up.id}`);
    add(
      `cache_peer ${up.host} parent ${up.port} 0 no-query no-digest name=${up.id}`,
      'never_direct allow all',
    );
  }
  return lines.join('\n') + '\n';
}
