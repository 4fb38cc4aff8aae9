/**
 * `validate --origins live`: checks a proxy in front of the real internet against the catalog
 * endpoints themselves. Nothing is sent beyond what proves the path works:
 *
 *  - https, tls, mqtts: CONNECT host:port, then a TLS handshake with SNI; https adds one
 *    `HEAD /` inside the verified session (the agent sends nothing on a session it refused);
 *  - tcp: CONNECT only; http (port 80 style): one forwarded absolute-form `HEAD http://host/`
 *    (check `forward`);
 *  - udp cannot go through an HTTP proxy: skipped with that reason.
 *
 * The certificate is judged against the public root store (Node's, or PROXYCHECK_PUBLIC_ROOTS)
 * plus `--trust-ca`. A chain that does not lead to a public root was re-signed: the re-signing CA
 * is named ("certificate for X issued by 'Corp CA', not a public CA"). Results use the RunReport
 * model with checks connect (forward for http rows), tls-interception and pinning; the catalog id
 * stands in the profile column.
 */
import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { answerEvidence } from '../agent/channel.ts';
import {
  basicAuth,
  type ConnectAnswer,
  connectTcp,
  connectToProxy,
  openTunnel,
  type ProxyAddress,
  parseAnswerHead,
  startTls,
  type TcpConnectError,
  type TlsResult,
} from '../agent/tunnel.ts';
import { checkDefinition, type Verdict } from '../checks/definitions.ts';
import { errorMessage, UsageError } from '../errors.ts';
import { type CheckResult, type Outcome, RESULT_SCHEMA_ID, type RunReport, summarize } from '../model.ts';
import { PreflightError } from '../proxies/external.ts';
import { DEFAULT_TIMEOUTS, type Timeouts, VERSION } from '../runner/run.ts';
import { type CatalogEndpoint, missingParams, resolveHost, type ScenarioSet } from '../scenarios.ts';
import { flagFor } from './params.ts';
import { anchorOf, type RootStore, rootStore } from './roots.ts';

export const LIVE_PROXY_ID = 'external';
/** In report order; an http row has `forward` instead of `connect`. */
export const LIVE_CHECKS = ['connect', 'forward', 'tls-interception', 'pinning'] as const;
type LiveCheck = (typeof LIVE_CHECKS)[number];

export interface LiveOptions {
  proxy: ProxyAddress & { url: string };
  scenarios: ScenarioSet;
  /** Catalog ids, or ["all"]. */
  catalogs: string[];
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

type LiveVerdict = Verdict;

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

const since = (t0: number) => Math.round(performance.now() - t0);

function skip(message: string): LiveVerdict {
  return { outcome: 'skip', message, evidence: {}, durationMs: 0, notApplicable: true };
}

function notRun(reason: string, dependsOn: string): LiveVerdict {
  return {
    outcome: 'dependency_fail',
    message: `not run: ${reason}`,
    evidence: { dependsOn },
    durationMs: 0,
  };
}

function serverOf(headers: Array<[string, string]>): string | undefined {
  return headers.find(([k]) => /^server$/i.test(k))?.[1] ?? headers.find(([k]) => /^via$/i.test(k))?.[1];
}

/** Fails with one line when nothing listens at the proxy address (exit 2, like lab mode). */
async function preflight(proxy: ProxyAddress, timeoutMs: number): Promise<void> {
  const where = `${proxy.host}:${proxy.port}`;
  try {
    (await connectTcp(proxy.host, proxy.port, timeoutMs)).destroy();
  } catch (err) {
    const e = err as TcpConnectError;
    throw new PreflightError(`proxy ${where} unreachable: ${e.timedOut ? 'TCP connect: ' : ''}${e.message}`);
  }
}

/** Reads one HTTP answer head from `socket` (deadline named in the error). */
function readHead(
  socket: Socket | TLSSocket,
  what: string,
  timeoutMs: number,
): Promise<{ answer?: ConnectAnswer; error?: string; errorCode?: string }> {
  return new Promise((resolve) => {
    let buf = Buffer.alloc(0);
    let settled = false;
    const timer = setTimeout(
      () => done({ error: `${what}: no answer within ${timeoutMs} ms`, errorCode: 'PC_DEADLINE' }),
      timeoutMs,
    );
    function done(r: { answer?: ConnectAnswer; error?: string; errorCode?: string }): void {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.removeListener('data', onData);
      socket.destroy();
      resolve(r);
    }
    function onData(d: Buffer): void {
      buf = Buffer.concat([buf, d]);
      const idx = buf.indexOf('\r\n\r\n');
      if (idx >= 0) {
        done({ answer: parseAnswerHead(Buffer.from(buf.subarray(0, idx + 4)), Buffer.alloc(0)) });
      } else if (buf.length > 32 * 1024) done({ error: `${what}: answer head exceeds 32 KiB` });
    }
    socket.on('data', onData);
    socket.once('error', (err) =>
      done({ error: `${what}: ${errorMessage(err)}`, errorCode: (err as NodeJS.ErrnoException).code }),
    );
    socket.once('close', () =>
      done({ error: `${what}: connection closed before an answer`, errorCode: 'PC_CLOSED' }),
    );
  });
}

function authority(host: string, port: number, defaultPort: number): string {
  return port === defaultPort ? host : `${host}:${port}`;
}

/** One forwarded absolute-form `HEAD http://host/` through the proxy (plain-HTTP rows). */
async function forwardHead(
  proxy: ProxyAddress,
  host: string,
  port: number,
  t: Timeouts,
): Promise<{ answer?: ConnectAnswer; error?: string; errorCode?: string; request: string }> {
  const hostPort = authority(host, port, 80);
  const head = [
    `HEAD http://${hostPort}/ HTTP/1.1`,
    `Host: ${hostPort}`,
    `User-Agent: proxycheck/${VERSION}`,
  ];
  if (proxy.credentials) head.push(`Proxy-Authorization: ${basicAuth(proxy.credentials)}`);
  head.push('Connection: close');
  const raw = head.join('\r\n') + '\r\n\r\n';
  const request = raw.replace(/(Proxy-Authorization: Basic )\S+/, '$1<redacted>');
  let socket: Socket;
  try {
    socket = await connectToProxy(proxy, t.connectMs);
  } catch (err) {
    return { error: errorMessage(err), request };
  }
  socket.write(raw);
  return { ...(await readHead(socket, `HEAD http://${hostPort}/ through the proxy`, t.answerMs)), request };
}

function judgeForward(target: string, r: Awaited<ReturnType<typeof forwardHead>>, t0: number): LiveVerdict {
  const evidence = {
    request: r.request,
    ...answerEvidence(r.answer),
    ...(r.errorCode ? { errorCode: r.errorCode } : {}),
  };
  const base = { evidence, durationMs: since(t0) };
  const a = r.answer;
  if (!a) return { ...base, outcome: 'fail', message: `HEAD http://${target}/ failed: ${r.error}` };
  const said = `HEAD http://${target}/ answered "${a.statusLine}"`;
  const proxyError = a.headers.find(([k]) => /^(x-squid-error|proxy-status)$/i.test(k));
  if (a.statusCode === 407) {
    return {
      ...base,
      outcome: 'fail',
      message: `${said}: the proxy wants credentials`,
      remediation:
        'Give the agent the proxy credentials (or exempt its hosts from proxy authentication); the proxy asked for them with 407.',
    };
  }
  if (proxyError || a.statusCode === 502 || a.statusCode === 503 || a.statusCode === 504) {
    return {
      ...base,
      outcome: 'fail',
      message: `${said}${proxyError ? ` (${proxyError[0]}: ${proxyError[1]})` : ''}: the proxy did not forward it`,
    };
  }
  if (a.statusCode === 403) {
    return {
      ...base,
      outcome: 'warn',
      message: `${said}: the proxy or the origin refused; no proxy error marker in the answer`,
      remediation: `Check whether the proxy refuses http://${target}/ for the agents; if it does, allow it.`,
    };
  }
  return { ...base, outcome: 'pass', message: `${said} (from the origin, through the proxy)` };
}

/** `HEAD /` inside a verified TLS session: proves the tunnel carries traffic both ways. */
async function headOverTls(
  socket: TLSSocket,
  host: string,
  port: number,
  timeoutMs: number,
): Promise<{ answer?: ConnectAnswer; error?: string }> {
  const what = `HEAD / to ${host}:${port} inside the tunnel`;
  socket.write(
    `HEAD / HTTP/1.1\r\nHost: ${authority(host, port, 443)}\r\nUser-Agent: proxycheck/${VERSION}\r\nConnection: close\r\n\r\n`,
  );
  return readHead(socket, what, timeoutMs);
}

interface ProbeContext {
  proxy: ProxyAddress;
  publicRoots: RootStore;
  trusted: RootStore;
  timeouts: Timeouts;
  /** The first Server/Via header any answer carried: what the proxy says it is. */
  seen: { server?: string };
}

async function probe(
  target: LiveTarget & { host: string },
  ctx: ProbeContext,
): Promise<Map<LiveCheck, LiveVerdict>> {
  const out = new Map<LiveCheck, LiveVerdict>();
  const { row, host } = target;
  const port = row.port;
  const hostPort = `${host}:${port}`;
  const t = ctx.timeouts;
  const noTls = (why: string) => {
    out.set('tls-interception', skip(why));
    out.set('pinning', skip(why));
  };

  if (row.transport === 'udp') {
    const why = `udp/${port} cannot pass an HTTP proxy: the agents need a direct route to ${hostPort} (not checked here)`;
    out.set('connect', skip(why));
    noTls(why);
    return out;
  }
  if (row.transport === 'http') {
    const t0 = performance.now();
    const r = await forwardHead(ctx.proxy, host, port, t);
    if (r.answer) ctx.seen.server ??= serverOf(r.answer.headers);
    out.set('forward', judgeForward(authority(host, port, 80), r, t0));
    noTls('plain HTTP: no TLS session to inspect');
    return out;
  }

  let t0 = performance.now();
  const tunnel = await openTunnel({
    proxy: ctx.proxy,
    target: { host, port },
    connectTimeoutMs: t.connectMs,
    answerTimeoutMs: t.answerMs,
    userAgent: `proxycheck/${VERSION}`,
  });
  if (tunnel.answer) ctx.seen.server ??= serverOf(tunnel.answer.headers);
  const common = { request: tunnel.requestHead, timings: tunnel.timings, ...answerEvidence(tunnel.answer) };
  const tlsTransport = row.transport !== 'tcp';
  if (!tunnel.ok) {
    out.set('connect', {
      outcome: 'fail',
      message: tunnel.answer
        ? `CONNECT ${hostPort} answered "${tunnel.answer.statusLine}", not 200`
        : `CONNECT ${hostPort} failed: ${tunnel.error}`,
      evidence: { ...common, ...(tunnel.errorCode ? { errorCode: tunnel.errorCode } : {}) },
      durationMs: since(t0),
    });
    if (!tlsTransport) noTls(`${row.transport}: the agent's protocol is not TLS; only the tunnel is checked`);
    else {
      out.set('tls-interception', notRun('the CONNECT tunnel was not established', 'connect'));
      out.set(
        'pinning',
        row.pinned ? notRun('the CONNECT tunnel was not established', 'connect') : skip(notPinned),
      );
    }
    return out;
  }
  const connectVerdict: LiveVerdict = {
    outcome: 'pass',
    message: `CONNECT ${hostPort} answered "${tunnel.answer.statusLine}"`,
    evidence: common,
    durationMs: since(t0),
  };
  out.set('connect', connectVerdict);
  if (!tlsTransport) {
    tunnel.socket.destroy();
    noTls(`${row.transport}: the agent's protocol is not TLS; only the tunnel is checked`);
    return out;
  }

  t0 = performance.now();
  const tls = await startTls(tunnel.socket, {
    servername: host,
    ca: [...ctx.publicRoots.pems, ...ctx.trusted.pems],
    timeoutMs: t.tlsMs,
  });
  const tlsMs = since(t0);
  const judged = judgeTls(target, tls, ctx, tlsMs);
  out.set('tls-interception', judged.interception);
  out.set('pinning', judged.pinning);

  if (tls.socket) {
    if (row.transport === 'https') {
      const h = await headOverTls(tls.socket, host, port, t.requestMs);
      connectVerdict.evidence = {
        ...connectVerdict.evidence,
        insideTunnel: h.answer ? { request: 'HEAD /', statusLine: h.answer.statusLine } : { error: h.error },
      };
      if (!h.answer) {
        connectVerdict.outcome = 'fail';
        connectVerdict.message = `CONNECT ${hostPort} answered "${tunnel.answer.statusLine}" and TLS was verified, but ${h.error}`;
        connectVerdict.remediation = `The proxy opened the tunnel but did not carry the request inside it: make it relay the CONNECT tunnel to ${hostPort} both ways, untouched.`;
      } else {
        connectVerdict.message += `; HEAD / inside the verified session answered "${h.answer.statusLine}"`;
      }
    } else {
      tls.socket.destroy();
    }
  }
  return out;
}

const notPinned = 'the catalog does not say an agent pins this endpoint';

function judgeTls(
  target: LiveTarget & { host: string },
  tls: TlsResult,
  ctx: ProbeContext,
  tlsMs: number,
): { interception: LiveVerdict; pinning: LiveVerdict } {
  const { row, host } = target;
  const leaf = tls.chain[0];
  const evidence: Record<string, unknown> = {
    handshakeMs: tls.handshakeMs,
    chain: tls.chain.map((c) => ({ subject: c.subjectCN, issuer: c.issuerCN, spkiSha256: c.spkiSha256 })),
    authorized: tls.authorized,
    trustStore: ctx.publicRoots.label + (ctx.trusted.pems.length ? ' + --trust-ca' : ''),
    ...(tls.authorizationError ? { authorizationError: tls.authorizationError } : {}),
    ...(tls.nameMismatch ? { nameMismatch: tls.nameMismatch } : {}),
  };
  if (!leaf) {
    const msg = tls.error ?? 'no certificate presented';
    return {
      interception: {
        outcome: 'fail',
        message: `TLS through the tunnel failed: ${msg}`,
        evidence,
        durationMs: tlsMs,
      },
      pinning: row.pinned
        ? { outcome: 'fail', message: `pinned TLS session failed: ${msg}`, evidence, durationMs: 0 }
        : skip(notPinned),
    };
  }
  const anchor = anchorOf(tls.chain, ctx.publicRoots, ctx.trusted);
  const accepted = tls.socket !== undefined;
  if (anchor.kind === 'public') {
    const interception: LiveVerdict = accepted
      ? {
          outcome: 'pass',
          message: `certificate for ${host} issued by "${leaf.issuerCN}", chaining to public root "${anchor.name}"`,
          evidence,
          durationMs: tlsMs,
        }
      : {
          outcome: 'fail',
          message: `certificate for ${host} chains to public root "${anchor.name}" but the agent refuses it: ${tls.refused}`,
          evidence,
          durationMs: tlsMs,
          remediation: `Not an interception: the origin's own certificate for ${host} is not accepted (${tls.refused}). Check the system clock and that nothing answers for ${host} in the origin's place.`,
        };
    const pinning: LiveVerdict = row.pinned
      ? {
          outcome: 'pass',
          message: `the key presented for ${host} comes with a public chain to "${anchor.name}", not a substitute`,
          evidence: { presentedSpki: leaf.spkiSha256, chain: evidence.chain },
          durationMs: 0,
        }
      : skip(notPinned);
    return { interception, pinning };
  }

  // Re-signed: the chain does not lead to a public root.
  const by = anchor.kind === 'trusted-ca' ? anchor.name : leaf.issuerCN;
  const trustedNote =
    anchor.kind === 'trusted-ca'
      ? `the agents trust it (--trust-ca)`
      : `the agents do not trust it, so they refuse the session (${tls.refused})`;
  const what = `TLS intercepted: certificate for ${host} issued by "${leaf.issuerCN}", not a public CA; ${trustedNote}`;
  const failing = row.mustNotInspect || !accepted;
  const interception: LiveVerdict = {
    outcome: failing ? 'fail' : 'warn',
    message: row.mustNotInspect ? `${what}; the vendor says this host must not be inspected` : what,
    evidence: {
      ...evidence,
      reSignedBy: leaf.issuer,
      reSignedByCN: by,
      agentTrusts: accepted,
      mustNotInspect: row.mustNotInspect,
      pinned: row.pinned,
      source: row.source,
    },
    durationMs: tlsMs,
    ...(!row.mustNotInspect && !accepted
      ? {
          remediation: `Either deploy the inspection CA "${by}" to the agents' trust store (check with --trust-ca FILE) or exclude ${host} from TLS inspection.`,
        }
      : {}),
  };
  const pinning: LiveVerdict = row.pinned
    ? {
        outcome: 'fail',
        message: `pinned agent fails closed: the key for ${host} was substituted (certificate issued by "${leaf.issuerCN}"); a pinned agent refuses it even from a trusted CA`,
        evidence: { presentedSpki: leaf.spkiSha256, presentedIssuer: leaf.issuer },
        durationMs: 0,
      }
    : skip(notPinned);
  return { interception, pinning };
}

function missingVerdicts(target: LiveTarget): Map<LiveCheck, LiveVerdict> {
  const names = target.missing ?? [];
  const why = `needs ${names.map(flagFor).join(' and ')} for ${target.row.host}; not checked`;
  const first = target.row.transport === 'http' ? 'forward' : 'connect';
  return new Map([first, 'tls-interception', 'pinning'].map((c) => [c as LiveCheck, skip(why)]));
}

async function pool<T>(items: T[], n: number, fn: (item: T, i: number) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    for (;;) {
      const i = next++;
      if (i >= items.length) return;
      await fn(items[i] as T, i);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(n, items.length)) }, worker));
}

export async function runLive(opts: LiveOptions): Promise<RunReport> {
  const startedAt = new Date().toISOString();
  const timeouts = { ...DEFAULT_TIMEOUTS, ...opts.timeouts };
  const targets = liveTargets(opts.scenarios, opts.catalogs, opts.params);
  if (!targets.length) throw new UsageError('the selected catalogs have no endpoints in agent scope');
  const t0 = performance.now();
  await preflight(opts.proxy, timeouts.connectMs);
  const startMs = since(t0);
  const ctx: ProbeContext = {
    proxy: opts.proxy,
    publicRoots: opts.publicRoots,
    trusted: rootStore(opts.extraTrust ?? [], '--trust-ca'),
    timeouts,
    seen: {},
  };
  const perTarget: Array<Map<LiveCheck, LiveVerdict>> = [];
  await pool(targets, opts.concurrency ?? 4, async (target, i) => {
    if (!target.host) {
      perTarget[i] = missingVerdicts(target);
      return;
    }
    try {
      perTarget[i] = await probe({ ...target, host: target.host }, ctx);
    } catch (err) {
      const v: LiveVerdict = {
        outcome: 'harness_fail',
        message: `harness error: ${errorMessage(err)}`,
        evidence: { stack: (err as Error).stack ?? '' },
        durationMs: 0,
      };
      perTarget[i] = new Map(LIVE_CHECKS.map((c) => [c, v]));
    }
  });
  const results: CheckResult[] = [];
  targets.forEach((target, i) => {
    const verdicts = perTarget[i];
    const host = target.host ?? target.row.host;
    for (const check of LIVE_CHECKS) {
      const v = verdicts?.get(check);
      if (!v) continue;
      const r = toResult(target.catalog, host, target.row.port, check, v);
      results.push(r);
      opts.onResult?.(r);
    }
  });
  return {
    schema: RESULT_SCHEMA_ID,
    startedAt,
    finishedAt: new Date().toISOString(),
    tool: { name: 'proxycheck', version: VERSION },
    proxies: [
      {
        id: LIVE_PROXY_ID,
        kind: 'external',
        runtime: 'external',
        version: ctx.seen.server ?? 'unknown',
        url: opts.proxy.url,
        startMs,
      },
    ],
    results,
    summary: summarize(results),
  };
}

function toResult(
  catalog: string,
  host: string,
  port: number,
  check: LiveCheck,
  v: LiveVerdict,
): CheckResult {
  const def = checkDefinition(check);
  const ctx = { host, port, proxyId: LIVE_PROXY_ID };
  const expected: Outcome = v.notApplicable ? 'skip' : 'pass';
  const endpoint = `${host}:${port}`;
  const needsRemedy = v.outcome === 'fail' || v.outcome === 'warn';
  return {
    id: `${LIVE_PROXY_ID}/${catalog}/${endpoint}/${check}`,
    proxy: LIVE_PROXY_ID,
    profile: catalog,
    endpoint,
    check,
    outcome: v.outcome,
    expected,
    matched: v.outcome === expected,
    message: v.message,
    evidence: { explain: def.explain(ctx), ...v.evidence },
    remediation: needsRemedy ? (v.remediation ?? def.remediation(ctx, v)) : '',
    durationMs: v.durationMs,
  };
}
