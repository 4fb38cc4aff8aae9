/**
 * Route policies any exchange kind can use, declared on the exchange (where its kind's option
 * schema allows them):
 *
 *  - failover (`failover: { port }`): when the agent does not reach the service on its primary port
 *    through the proxy, it tries the documented failover port; check `failover`, and the later
 *    checks then describe that port (ESET push: 8883, then 443).
 *  - fallback (the profile's `proxyUnreachable`): when the configured proxy cannot be reached at
 *    all (refused, its name does not resolve, no TCP answer by the agent's connect deadline), a
 *    fail-open agent asks auto detect (its machine's WPAD or PAC, or DIRECT: client-network.ts)
 *    and takes the first route that works; check `fallback` (with the route, what was tried and
 *    the time to fall back), and the later checks then describe that route (remote assistance,
 *    seed 000). A fail-closed agent stays offline, said on `connect`. A proxy that answers, even
 *    403, is up: no fallback; one that dies mid-session is judged on how the route recovered.
 */
import type { ExchangeKind, KindContext, KindVerdict, KindVerdicts } from '../agent/kinds/types.ts';
import { connectToProxy, type ProxyAddress } from '../agent/tunnel.ts';
import { CHECK_ORDER } from '../checks/index.ts';
import { notApplicable } from '../checks/types.ts';
import { errorMessage } from '../errors.ts';
import type { ProfileExchange } from '../scenarios.ts';
import { plainClientNetwork, scriptUrlFor } from './client-network.ts';
import type { PacEntry } from './pac.ts';
import { directRoute, proxyRoute, type Route } from './route.ts';

const since = (t0: number) => Math.round(performance.now() - t0);
const FINE = new Set(['pass', 'warn', 'skip']);
/** Checks that say whether the agent got to talk to its service at all. */
const REACH = ['connect', 'connect-response', 'tls-interception', 'pinning', 'mtls', 'protocol'];

/** The checks an exchange reports: its kind's, plus those of the route policies it declares. */
export function exchangeChecks(kind: ExchangeKind, x: ProfileExchange, route?: Route): string[] {
  const extra = [
    // an agent configured with proxy credentials: how it authenticated, on every tunnel
    ...(route?.via === 'proxy' && route.proxy.auth && !kind.forwarded ? ['proxy-auth'] : []),
    ...(x.failover ? ['failover'] : []),
    ...(x.proxyUnreachable?.fallback === 'auto-detect' ? ['fallback'] : []),
  ];
  const all = new Set([...kind.checks(x), ...extra]);
  return CHECK_ORDER.filter((c) => all.has(c));
}

/** The agent reached its service: nothing up to the protocol handshake failed or was left out. */
function reached(out: KindVerdicts, checks: string[]): boolean {
  return checks.filter((c) => REACH.includes(c)).every((c) => FINE.has(out.get(c)?.outcome ?? 'missing'));
}

/** Every check of the session held. */
function worked(out: KindVerdicts, checks: string[]): boolean {
  return checks.every((c) => FINE.has(out.get(c)?.outcome ?? 'missing'));
}

/** The first thing that went wrong, for evidence. */
function firstFailure(out: KindVerdicts, checks: string[]): string {
  for (const c of checks) {
    const v = out.get(c);
    if (v && !FINE.has(v.outcome)) return v.message.replace(/^not run: /, '');
  }
  return 'the session did not complete';
}

/** What a session that worked did, from its protocol and payload verdicts. */
function sessionSaid(out: KindVerdicts): string {
  const said = ['protocol', 'payload'].map((c) => out.get(c)).filter((v) => v?.outcome === 'pass');
  return said.length ? said.map((v) => v?.message).join('; ') : 'the whole session worked';
}

/** What the protocol check said, as a parenthesis for messages. */
function protocolSaid(out: KindVerdicts): string {
  const p = out.get('protocol');
  return p?.outcome === 'pass' ? ` (${p.message})` : '';
}

/** Runs the exchange with the policies its profile declares; `checks` are the kind's own. */
export async function runWithPolicies(kind: ExchangeKind, ctx: KindContext): Promise<KindVerdicts> {
  const checks = kind.checks(ctx.exchange);
  const run = (c: KindContext) => withFailover(kind, c, checks);
  return withFallback(ctx, checks, run, kind.forwarded === true);
}

async function withFailover(kind: ExchangeKind, ctx: KindContext, checks: string[]): Promise<KindVerdicts> {
  const t0 = performance.now();
  const primary = await kind.run(ctx);
  const fo = ctx.exchange.failover?.port;
  if (fo === undefined) return primary;
  const foEndpoint = `${ctx.host}:${fo}`;
  if (reached(primary, checks)) {
    primary.set('failover', {
      ...notApplicable(
        `${ctx.host}:${ctx.port} worked${protocolSaid(primary)}, so the agent had no reason to fail over to ${fo}`,
      ),
      endpoint: foEndpoint,
    });
    return primary;
  }
  const primaryMs = since(t0);
  const t1 = performance.now();
  const secondary = await kind.run({ ...ctx, port: fo, row: ctx.rowFor(fo) ?? ctx.row });
  const ok = worked(secondary, checks);
  const connect = primary.get('connect');
  const secondConnect = secondary.get('connect');
  const reason = firstFailure(primary, checks);
  const evidence = {
    primary: {
      endpoint: `${ctx.host}:${ctx.port}`,
      reason,
      ...(connect?.evidence.answerHead ? { answerHead: connect.evidence.answerHead } : {}),
      ms: primaryMs,
    },
    failover: {
      endpoint: foEndpoint,
      connect: secondConnect?.evidence.statusLine ?? secondConnect?.message,
      ...(ok ? {} : { reason: firstFailure(secondary, checks) }),
      ms: since(t1),
    },
  };
  const out: KindVerdicts = new Map();
  if (connect) out.set('connect', connect);
  out.set('failover', {
    outcome: ok ? 'pass' : 'fail',
    message: ok
      ? `${ctx.host}:${ctx.port} failed (${reason}); failed over to ${fo}: ${sessionSaid(secondary)}`
      : `${ctx.host}:${ctx.port} failed (${reason}) and the failover to ${fo} failed too (${evidence.failover.reason})`,
    evidence,
    durationMs: since(t1),
    endpoint: foEndpoint,
  });
  // the agent ended up on the failover port: the later checks are about that port
  for (const [c, v] of secondary) if (c !== 'connect') out.set(c, { ...v, endpoint: foEndpoint });
  return out;
}

/**
 * Could the agent reach the proxy at all? Only a proxy that never took the TCP connection
 * (refused, its name not resolving, no answer by the deadline: a socket error code and no
 * connection time) is unreachable; one that answered, even 403 or 407, is up. `entry` is the
 * agent's first step on it: its CONNECT, or a forwarded plain-HTTP request.
 */
export function proxyUnreachable(
  entry: KindVerdict | undefined,
  at: string,
): { unreachable: boolean; why: string } {
  const ev = (entry?.evidence ?? {}) as {
    timings?: { tcpConnectMs?: number };
    statusLine?: string;
    errorCode?: string;
  };
  if (!entry || entry.outcome === 'pass') return { unreachable: false, why: 'it answered' };
  if (ev.statusLine) return { unreachable: false, why: `it answered "${ev.statusLine}"` };
  if (ev.timings?.tcpConnectMs !== undefined || !ev.errorCode)
    return { unreachable: false, why: `it took the TCP connection (${entry.message})` };
  if (ev.errorCode === 'PC_DEADLINE')
    return { unreachable: true, why: `no TCP answer from ${at} (${entry.message})` };
  if (ev.errorCode === 'ENOTFOUND') return { unreachable: true, why: entry.message };
  return { unreachable: true, why: `${ev.errorCode} ${at}` };
}

/** A route of the script's answer, with the definition of a proxy it names when the run started it. */
function entryLabel(e: PacEntry, names?: Map<string, string>): string {
  if (e.type === 'DIRECT') return 'DIRECT';
  const at = `${e.host}:${e.port}`;
  const id = names?.get(at);
  return `${e.type} ${at}${id ? ` (${id})` : ''}`;
}

interface Tried {
  route: string;
  outcome: string;
  ms: number;
}

/**
 * What the agent does when its configured proxy cannot be reached (its profile's
 * `proxyUnreachable`): fail-open agents ask auto detect for a route and take the first that
 * answers; fail-closed ones stay offline (said on `connect`). A proxy that answered is up: no
 * fallback; one that died mid-session is judged on how the agent's route recovered.
 */
async function withFallback(
  ctx: KindContext,
  checks: string[],
  run: (c: KindContext) => Promise<KindVerdicts>,
  forwarded: boolean,
): Promise<KindVerdicts> {
  const t0 = performance.now();
  const viaProxy = await run(ctx);
  if (ctx.route.via !== 'proxy') return viaProxy;
  const proxyAt = `${ctx.route.proxy.host}:${ctx.route.proxy.port}`;
  const policy = ctx.exchange.proxyUnreachable;
  // the agent's first step on the proxy: its CONNECT, or a forwarded request for plain HTTP
  const entry = viaProxy.get('connect') ?? viaProxy.get('forward');
  const reach = proxyUnreachable(entry, proxyAt);
  if (!reach.unreachable) {
    // the session through the proxy broke after its CONNECT: is the proxy gone (it died)?
    const died =
      entry?.outcome === 'pass' && !worked(viaProxy, checks)
        ? await proxyGone(ctx.route.proxy, ctx.timeouts.connectMs)
        : undefined;
    if (died && policy?.fallback === 'auto-detect') {
      const tBroke = performance.now();
      const recovered = await autoDetect(ctx, checks, run, forwarded, proxyAt, died, tBroke, true);
      const fb = recovered.get('fallback') as KindVerdict;
      viaProxy.set('fallback', fb);
      return viaProxy;
    }
    if (policy?.fallback !== 'auto-detect') return failClosed(viaProxy, ctx, reach, died);
    viaProxy.set(
      'fallback',
      notApplicable(
        entry?.outcome !== 'pass'
          ? `the proxy was up (${reach.why}); the agent falls back to auto detect only when its proxy cannot be reached`
          : worked(viaProxy, checks)
            ? 'the proxy was up; the session went through it'
            : 'the proxy was up and still is; the session broke there, not for want of a proxy',
      ),
    );
    return viaProxy;
  }
  if (policy?.fallback !== 'auto-detect') return failClosed(viaProxy, ctx, reach);
  const out = await autoDetect(ctx, checks, run, forwarded, proxyAt, reach.why, t0, false);
  for (const c of ['connect', 'forward']) {
    const v = viaProxy.get(c);
    if (v) out.set(c, v);
  }
  return out;
}

/** After a session broke: whether the proxy still takes a TCP connection (undefined) or why not. */
async function proxyGone(proxy: ProxyAddress, deadlineMs: number): Promise<string | undefined> {
  try {
    const s = await connectToProxy(proxy, deadlineMs);
    s.destroy();
    return undefined;
  } catch (err) {
    return `the proxy died during the session: a new connection now fails (${errorMessage(err)})`;
  }
}

/** A fail-closed agent: its `connect` says it stays offline, and why we believe so. */
function failClosed(
  out: KindVerdicts,
  ctx: KindContext,
  reach: { unreachable: boolean; why: string },
  died?: string,
): KindVerdicts {
  if (!reach.unreachable && !died) return out;
  const policy = ctx.exchange.proxyUnreachable;
  const agent = policy?.agent ?? 'the agent';
  const cite = policy?.undocumented
    ? `its sources (${policy.source.join(', ')}) document no fallback when the proxy cannot be reached`
    : `its profile says it does not fall back (${policy?.source.join(', ') ?? 'no source'})`;
  const stays = `${agent} stays offline until the proxy is back: ${cite}`;
  const first = out.has('connect') ? 'connect' : 'forward';
  const c = out.get(first);
  if (c && reach.unreachable)
    out.set(first, {
      ...c,
      message: `${c.message}; ${stays}`,
      evidence: { ...c.evidence, fallback: 'none (fail-closed)' },
    });
  if (died) {
    const k = [...out.entries()].find(([, v]) => !FINE.has(v.outcome));
    if (k) out.set(k[0], { ...k[1], message: `${k[1].message}; ${died}; ${stays}` });
  }
  return out;
}

/**
 * Auto detect, as the agent's machine does it: the route list its client network gives for the
 * exchange's URL, tried in order (a proxy that cannot be reached and a DIRECT the firewall blocks
 * move on to the next; one that answers is the route). `since` is when the agent started trying.
 */
async function autoDetect(
  ctx: KindContext,
  checks: string[],
  run: (c: KindContext) => Promise<KindVerdicts>,
  forwarded: boolean,
  proxyAt: string,
  proxyError: string,
  since0: number,
  recovery: boolean,
): Promise<KindVerdicts> {
  const client = ctx.client ?? plainClientNetwork((h) => ctx.directAddress(h));
  const policy = ctx.exchange.proxyUnreachable;
  const withinMs =
    policy?.fallbackWithinSeconds !== undefined ? policy.fallbackWithinSeconds * 1000 : undefined;
  const target = `${ctx.host}:${ctx.port}`;
  const lead = recovery ? proxyError : `proxy unreachable (${proxyError})`;
  const out: KindVerdicts = new Map();
  const base = {
    proxy: proxyAt,
    proxyError,
    ...(recovery ? { recovery: true } : {}),
    connectDeadlineMs: ctx.timeouts.connectMs,
    ...(withinMs !== undefined ? { fallbackWithinMs: withinMs } : {}),
  };
  const found = await client.discover(scriptUrlFor(ctx.host, ctx.port, forwarded), ctx.host);
  if (!found.ok) {
    out.set('fallback', {
      outcome: 'fail',
      message: `${lead}; auto detect (${found.method}) could not use its proxy script ${found.source}: ${found.stage}: ${found.error}`,
      evidence: {
        ...base,
        method: found.method,
        pacSource: found.source,
        pacStage: found.stage,
        pacError: found.error,
      },
      durationMs: since(since0),
    });
    return out;
  }
  const discovery = {
    method: found.method,
    discovery: found.note,
    ...(found.source ? { pacSource: found.source } : {}),
    ...(found.answer !== undefined ? { pacAnswer: found.answer } : {}),
  };
  const tried: Tried[] = [];
  for (const entry of found.entries) {
    const label = entryLabel(entry, client.proxyNames);
    const t1 = performance.now();
    if (entry.type === 'DIRECT' && client.direct === 'blocked') {
      tried.push({
        route: label,
        outcome: "blocked: the machine's firewall does not let it go DIRECT",
        ms: 0,
      });
      continue;
    }
    if (entry.type !== 'DIRECT' && entry.type !== 'PROXY') {
      tried.push({ route: label, outcome: `the agent does not speak ${entry.type} proxies`, ms: 0 });
      continue;
    }
    const route =
      entry.type === 'DIRECT'
        ? directRoute(client.resolve, proxyAt)
        : proxyRoute({ host: entry.host, port: entry.port, resolve: client.resolve });
    const res = await run({ ...ctx, route });
    const ms = since(t1);
    if (route.via === 'proxy') {
      const r2 = proxyUnreachable(res.get('connect'), label);
      if (r2.unreachable) {
        tried.push({ route: label, outcome: `unreachable: ${r2.why}`, ms });
        continue;
      }
    } else if (res.get('fallback')) {
      // the direct dial itself failed (dial() reports it as fallback)
      tried.push({ route: label, outcome: res.get('fallback')?.message ?? 'failed', ms });
      continue;
    }
    const fallbackMs = Math.round(t1 - since0);
    const onRoute =
      route.via === 'direct' ? checks.filter((c) => c !== 'connect' && c !== 'connect-response') : checks;
    const ok = reached(res, onRoute);
    const all = worked(res, onRoute);
    const slow = withinMs !== undefined && fallbackMs > withinMs;
    const at = [...res.values()]
      .map((v) => v.evidence.address)
      .find((a): a is string => typeof a === 'string');
    for (const [c, v] of res) if (c !== 'connect' && c !== 'fallback' && !recovery) out.set(c, v);
    const tries = tried.length ? ` after ${tried.map((t) => `${t.route} (${t.outcome})`).join(', ')}` : '';
    const how = `auto detect: ${found.note}; ${recovery ? 'recovered through' : 'took'} ${label}${tries}`;
    const after = `${fallbackMs} ms ${recovery ? 'after the session broke' : 'after the first attempt on the proxy'}`;
    out.set('fallback', {
      outcome: ok && !slow ? 'pass' : 'fail',
      message: `${lead}; ${how}, on it ${after}: ${
        !ok
          ? `reached ${target} but the session did not get through: ${firstFailure(res, onRoute)}`
          : slow
            ? `too slow: the profile allows ${withinMs} ms (proxyUnreachable.fallbackWithinSeconds)`
            : `reached ${target}${at ? ` at ${at.split(':')[0]}` : ''} ${all ? 'and the session worked' : `and the session opened (${firstFailure(res, onRoute)})`}`
      }`,
      evidence: {
        ...base,
        ...discovery,
        route: route.via === 'direct' ? route.label : label,
        ...(route.via === 'proxy' ? { routeConnect: res.get('connect')?.message } : {}),
        ...(at ? { address: at } : {}),
        tried,
        fallbackMs,
        sessionWorked: all,
      },
      durationMs: since(since0),
    });
    return out;
  }
  out.set('fallback', {
    outcome: 'fail',
    message: `${lead}; auto detect: ${found.note}; no route worked: ${tried.map((t) => `${t.route} (${t.outcome})`).join(', ')}`,
    evidence: { ...base, ...discovery, tried },
    durationMs: since(since0),
  });
  return out;
}
