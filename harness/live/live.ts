/**
 * `validate --origins live`: a proxy in front of the real internet, checked against the catalog
 * endpoints themselves by the one runner (harness/runner/run.ts) with live origins: every
 * agent-scope catalog row becomes a `probe` exchange (live/probe.ts), the catalog id stands in the
 * profile column, and certificates are judged against the public root store (Node's, or
 * PROXYCHECK_PUBLIC_ROOTS) plus `--trust-ca`. A chain that does not lead to a public root was
 * re-signed: the re-signing CA is named ("certificate for X issued by 'Corp CA', not a public CA").
 */

import { connectProxyTls } from '../agent/proxy-tls.ts';
import type { ProxyAddress, TcpConnectError } from '../agent/tunnel.ts';
import { connectTcp } from '../agent/tunnel.ts';
import type { TrustPolicy } from '../checks/tls-judgement.ts';
import { UsageError } from '../errors.ts';
import type { CheckResult, RunReport } from '../model.ts';
import { PreflightError, proxyCertError, refusesProxyCert } from '../proxies/external.ts';
import type { ProxyUnderTest, StartedProxy } from '../proxies/types.ts';
import type { ProxyCredentials } from '../route/auth.ts';
import type { OriginsStrategy } from '../runner/origins.ts';
import { runMatrix, type Timeouts } from '../runner/run.ts';
import {
  type CatalogEndpoint,
  missingParams,
  type Profile,
  resolveHost,
  type ScenarioSet,
} from '../scenarios.ts';
import { VERSION } from '../util/pkg.ts';
import { flagFor } from './params.ts';
import { anchorOf, type RootStore, rootStore } from './roots.ts';

export const LIVE_PROXY_ID = 'external';
/** In report order; an http row has `forward` instead of `connect`. */
export const LIVE_CHECKS = ['connect', 'forward', 'tls-interception', 'pinning'] as const;

export interface LiveOptions {
  /** `id`: the proxy's id in the results (default external; validate --pac: pac:host:port, …). */
  proxy: Omit<ProxyAddress, 'auth'> & { url: string; credentials?: ProxyCredentials; id?: string };
  scenarios: ScenarioSet;
  /** Catalog ids, or ["all"]. */
  catalogs: string[];
  /** Only the rows this accepts (validate: the rows whose route is this proxy); default every row. */
  rows?: (t: LiveTarget) => boolean;
  /** Placeholder values the user gave (`tenant` from --tenant, the rest from --param); lab defaults never count. */
  params: Record<string, string>;
  publicRoots: RootStore;
  /** PEM certificates of the customer's inspection CA(s), as deployed to the agents (--trust-ca). */
  extraTrust?: string[];
  timeouts?: Partial<Timeouts>;
  /** Endpoints probed at the same time (default 4). */
  concurrency?: number;
  onResult?: (r: CheckResult) => void;
}

export interface LiveTarget {
  catalog: string;
  row: CatalogEndpoint;
  /** The host with placeholders filled; absent when a value is missing. */
  host?: string;
  missing?: string[];
}

export function selectCatalogs(set: ScenarioSet, ids: string[]): string[] {
  const known = [...set.catalogs.keys()];
  if (ids.length === 1 && ids[0] === 'all') return known;
  for (const id of ids) {
    if (!set.catalogs.has(id))
      throw new UsageError(`unknown catalog "${id}" (known: ${known.join(', ')}, all)`);
  }
  return ids;
}

/** The agent-scope rows of the selected catalogs, hosts filled from `params` where possible. */
export function liveTargets(
  set: ScenarioSet,
  catalogs: string[],
  params: Record<string, string>,
): LiveTarget[] {
  const out: LiveTarget[] = [];
  for (const id of selectCatalogs(set, catalogs)) {
    for (const row of set.catalogs.get(id)?.endpoints ?? []) {
      if ((row.scope ?? 'agent') !== 'agent') continue;
      const missing = missingParams(row.host, params);
      out.push(
        missing.length
          ? { catalog: id, row, missing }
          : { catalog: id, row, host: resolveHost(row.host, { params }).toLowerCase() },
      );
    }
  }
  return out;
}

/** The public web PKI as the agents know it, plus the customer's deployed inspection CA(s). */
export function liveTrustPolicy(publicRoots: RootStore, trusted: RootStore): TrustPolicy {
  return {
    ca: [...publicRoots.pems, ...trusted.pems],
    evidence: { trustStore: publicRoots.label + (trusted.pems.length ? ' + --trust-ca' : '') },
    classify(chain) {
      const anchor = anchorOf(chain, publicRoots, trusted);
      return anchor.kind === 'public'
        ? {
            origin: true,
            describe: `issued by "${chain[0]?.issuerCN}", chaining to public root "${anchor.name}"`,
          }
        : {
            origin: false,
            reSignedByCN: anchor.kind === 'trusted-ca' ? anchor.name : (chain[0]?.issuerCN ?? 'unknown'),
          };
    },
    describeSubstitute: (leaf, _by, accepted, refused) =>
      `issued by "${leaf.issuerCN}", not a public CA; ${
        accepted
          ? 'the agents trust it (--trust-ca)'
          : `the agents do not trust it, so they refuse the session (${refused})`
      }`,
    refusalFailsHere: true,
    notPinned: 'the catalog does not say an agent pins this endpoint',
  };
}

function liveOrigins(trust: TrustPolicy): OriginsStrategy {
  return {
    start: async () => ({
      trust: () => trust,
      directAddress: () => undefined,
      clientCert: () => {
        throw new Error('live probes present no device certificate');
      },
      stop: async () => {},
    }),
  };
}

/** The customer's proxy in front of the internet: start() only checks that something listens. */
function liveProxy(p: LiveOptions['proxy'], timeoutMs: number): ProxyUnderTest {
  const id = p.id ?? LIVE_PROXY_ID;
  return {
    id,
    describe: () => `proxy at ${p.url}`,
    async start(): Promise<StartedProxy> {
      const t0 = performance.now();
      const where = `${p.host}:${p.port}`;
      try {
        (await connectTcp(p.host, p.port, timeoutMs)).destroy();
      } catch (err) {
        const e = err as TcpConnectError;
        throw new PreflightError(
          `proxy ${where} unreachable: ${e.timedOut ? 'TCP connect: ' : ''}${e.message.replace(` ${where}`, '')}`,
        );
      }
      if (p.tls) {
        // an https:// proxy: a certificate the agent refuses stops validate in one line, as in lab mode
        const r = await connectProxyTls(p.host, p.port, p.host, p.tls, timeoutMs);
        if ('socket' in r) r.socket.destroy();
        else if (refusesProxyCert(r.code)) throw proxyCertError(p.host, p.port, p.tls, r.code, r.error);
        else throw new PreflightError(`proxy ${where}: no TLS to it: ${r.error}`);
      }
      return {
        id,
        kind: 'external',
        runtime: 'external',
        version: 'unknown',
        url: p.url,
        host: p.host,
        port: p.port,
        ...(p.credentials ? { credentials: p.credentials } : {}),
        ...(p.tls ? { tls: p.tls } : {}),
        startMs: Math.round(performance.now() - t0),
        stop: async () => {},
      };
    },
  };
}

/** What the proxy says it is: the first Server (or Via) header any answer quoted in the evidence. */
function serverOf(results: CheckResult[]): string | undefined {
  for (const r of results) {
    const head = typeof r.evidence.answerHead === 'string' ? r.evidence.answerHead : '';
    const m = /^Server: *([^\r\n]+)$/im.exec(head) ?? /^Via: *([^\r\n]+)$/im.exec(head);
    if (m) return m[1];
  }
  return undefined;
}

export async function runLive(opts: LiveOptions): Promise<RunReport> {
  const all = liveTargets(opts.scenarios, opts.catalogs, opts.params);
  if (!all.length) throw new UsageError('the selected catalogs have no endpoints in agent scope');
  const targets = opts.rows ? all.filter(opts.rows) : all;
  if (!targets.length) throw new Error('runLive: no row left to check');
  // one profile per catalog, one probe exchange per agent-scope row
  const profiles = new Map<string, Profile>();
  const hosts = new Map<object, string>();
  for (const t of targets) {
    const p = profiles.get(t.catalog) ?? { id: t.catalog, title: t.catalog, source: [], exchanges: [] };
    const x = {
      kind: 'probe',
      catalog: t.catalog,
      host: t.row.host,
      port: t.row.port,
      transport: t.row.transport,
      userAgent: `proxycheck/${VERSION}`,
      ...(t.missing ? { missing: t.missing.map(flagFor) } : {}),
    };
    hosts.set(x, t.host ?? t.row.host);
    p.exchanges.push(x);
    profiles.set(t.catalog, p);
  }
  const trust = liveTrustPolicy(opts.publicRoots, rootStore(opts.extraTrust ?? [], '--trust-ca'));
  const report = await runMatrix({
    proxies: [liveProxy(opts.proxy, opts.timeouts?.connectMs ?? 5_000)],
    profiles: [...profiles.values()],
    scenarios: opts.scenarios,
    origins: liveOrigins(trust),
    hostOf: (x) => hosts.get(x) ?? x.host,
    concurrency: opts.concurrency ?? 4,
    ...(opts.timeouts ? { timeouts: opts.timeouts } : {}),
    ...(opts.onResult ? { onResult: opts.onResult } : {}),
  });
  const version = serverOf(report.results);
  if (version && report.proxies[0]) report.proxies[0].version = version;
  return report;
}
