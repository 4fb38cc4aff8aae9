/**
 * Route policies any exchange kind can use, declared on the exchange (where its kind's option
 * schema allows them):
 *
 *  - failover (`failover: { port }`): when the agent does not reach the service on its primary port
 *    through the proxy, it tries the documented failover port; check `failover`, and the later
 *    checks then describe that port (ESET push: 8883, then 443).
 *  - fallback (`fallbackDirect: true`): when the configured proxy cannot be reached at all (no TCP
 *    connection: refused, unreachable, no answer by the deadline), the agent goes "auto detect",
 *    straight to the host; check `fallback`, and the later checks then describe that route (remote
 *    assistance, seed 000). A proxy that answers, even with 403, is reachable: no fallback.
 */
import type { ExchangeKind, KindContext, KindVerdict, KindVerdicts } from '../agent/kinds/types.ts';
import { CHECK_ORDER } from '../checks/index.ts';
import { notApplicable } from '../checks/types.ts';
import type { ProfileExchange } from '../scenarios.ts';
import { directRoute } from './route.ts';

const since = (t0: number) => Math.round(performance.now() - t0);
const FINE = new Set(['pass', 'warn', 'skip']);
/** Checks that say whether the agent got to talk to its service at all. */
const REACH = ['connect', 'connect-response', 'tls-interception', 'pinning', 'mtls', 'protocol'];

/** The checks an exchange reports: its kind's, plus those of the route policies it declares. */
export function exchangeChecks(kind: ExchangeKind, x: ProfileExchange): string[] {
  const extra = [...(x.failover ? ['failover'] : []), ...(x.fallbackDirect ? ['fallback'] : [])];
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
  return ctx.exchange.fallbackDirect ? withFallback(ctx, checks, run) : run(ctx);
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
 * Could the agent reach the proxy at all? Only a proxy that never accepted the TCP connection
 * (refused, unreachable, no answer by the deadline) is unreachable; one that answered is not.
 */
export function proxyUnreachable(
  connect: KindVerdict | undefined,
  at: string,
): { unreachable: boolean; why: string } {
  const ev = (connect?.evidence ?? {}) as {
    timings?: { tcpConnectMs?: number };
    statusLine?: string;
    errorCode?: string;
  };
  if (!connect || connect.outcome === 'pass') return { unreachable: false, why: 'it answered CONNECT' };
  if (ev.statusLine) return { unreachable: false, why: `it answered "${ev.statusLine}"` };
  if (ev.timings?.tcpConnectMs !== undefined)
    return { unreachable: false, why: `it accepted the TCP connection (${connect.message})` };
  if (ev.errorCode === 'PC_DEADLINE')
    return { unreachable: true, why: `no TCP answer from ${at} (${connect.message})` };
  return { unreachable: true, why: `${ev.errorCode ?? 'error'} ${at}` };
}

async function withFallback(
  ctx: KindContext,
  checks: string[],
  run: (c: KindContext) => Promise<KindVerdicts>,
): Promise<KindVerdicts> {
  const viaProxy = await run(ctx);
  if (ctx.route.via !== 'proxy') return viaProxy;
  const proxyAt = `${ctx.route.proxy.host}:${ctx.route.proxy.port}`;
  const reach = proxyUnreachable(viaProxy.get('connect'), proxyAt);
  if (!reach.unreachable) {
    viaProxy.set(
      'fallback',
      notApplicable(
        viaProxy.get('connect')?.outcome === 'pass'
          ? 'the proxy was reachable; the session went through it'
          : `the proxy was reachable (${reach.why}); the agent falls back to auto detect only when its proxy cannot be reached`,
      ),
    );
    return viaProxy;
  }
  // the proxy is not there: "auto detect", straight to the host
  const t0 = performance.now();
  const direct = await run({ ...ctx, route: directRoute(ctx.directAddress, proxyAt) });
  const out: KindVerdicts = new Map();
  const connect = viaProxy.get('connect');
  if (connect) out.set('connect', connect);
  for (const [c, v] of direct) if (c !== 'connect' && c !== 'fallback') out.set(c, v);
  const target = `${ctx.host}:${ctx.port}`;
  const stopped = direct.get('fallback');
  if (stopped) {
    out.set('fallback', {
      ...stopped,
      message: `proxy unreachable (${reach.why}); the auto-detect route to ${target} failed too: ${stopped.message}`,
      evidence: { ...stopped.evidence, proxyError: reach.why },
      durationMs: since(t0),
    });
    return out;
  }
  // no CONNECT on the direct route: the rest of the session says whether it got through
  const onDirect = checks.filter((c) => c !== 'connect' && c !== 'connect-response');
  const ok = reached(direct, onDirect);
  // where the agent's own network sent it (the direct route records it with its TLS evidence)
  const at = [...direct.values()]
    .map((v) => v.evidence.address)
    .find((a): a is string => typeof a === 'string');
  const all = worked(direct, onDirect);
  out.set('fallback', {
    outcome: ok ? 'pass' : 'fail',
    message: `proxy unreachable (${reach.why}); auto-detect route reached ${target}${at ? ` at ${at.split(':')[0]}` : ''} ${
      ok
        ? all
          ? 'and the session worked'
          : `and the session opened (${firstFailure(direct, onDirect)})`
        : `but the session did not get through: ${firstFailure(direct, onDirect)}`
    }`,
    evidence: {
      route: 'direct (auto detect)',
      ...(at ? { address: at } : {}),
      proxy: proxyAt,
      proxyError: reach.why,
      sessionWorked: all,
    },
    durationMs: since(t0),
  });
  return out;
}
