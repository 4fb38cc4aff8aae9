/**
 * The oracle: from a proxy definition's knobs, the outcome each check should have, with its
 * reason: what the knobs predict, and what every instance of the engine does (ENGINE_TRAITS, each
 * with the reason it is so). No prediction means the check's own default: `pass`, or `skip` where
 * it does not apply or a real-time property was not known in the time the run waited.
 * expectations.ts puts deviations, predictions and defaults together and watches the deviations.
 * `tls` (an HTTPS proxy) predicts nothing of its own: TLS to the proxy changes no check's outcome.
 */
import { kindOf } from '../agent/kinds/index.ts';
import { gapMargin } from '../checks/tunnel-keepalive.ts';
import type { Outcome } from '../model.ts';
import type { Discovery } from '../route/client-network.ts';
import { timerWait } from '../route/timers.ts';
import {
  catalogRow,
  type ExpectationKey,
  type LoadedDefinition,
  type ProfileExchange,
  resolveHost,
  type ScenarioSet,
} from '../scenarios.ts';
import { allowedPorts, DEFAULT_HEADERS, inspects, UNREACHABLE } from './definition.ts';
import { catalogPorts, spliceHostsOf } from './squid/config.ts';

export interface Prediction {
  expect: Outcome;
  reason?: string;
}

/** What the oracle needs of a run besides the definition. */
export interface OracleEnv {
  /** The agents trust the inspection CA (`--trust-corporate-ca`). */
  trustInspectionCa?: boolean;
  timeScale: number;
  /** `--timer-wait`, when given. */
  timerWait?: number;
  /**
   * What the proxy's client network's auto detect answers for a host (its proxy script run once,
   * before the work items, by the runner), with the definitions of the proxies the script names.
   */
  autoDetect?: (proxyId: string, host: string, port: number) => AutoDetectAnswer | undefined;
}

/** The route list auto detect gives for one host, and which definition each proxy in it is. */
export interface AutoDetectAnswer {
  discovery: Discovery;
  /** `host:port` of a proxy the script names → its definition. */
  proxies: Map<string, LoadedDefinition>;
}

export interface OracleKey extends ExpectationKey {
  host: string;
  exchange: ProfileExchange;
}

/** A definition with its lists resolved against a scenario set. */
export interface Resolved {
  /** The CONNECT ports allowed; undefined: any. */
  allowed: Set<number> | undefined;
  /** The hosts named by `inspection` (lower-case, tenant resolved), catalog hosts included. */
  inspectHosts: Set<string>;
  inspecting: boolean;
}

const resolvedCache = new WeakMap<LoadedDefinition, WeakMap<ScenarioSet, Resolved>>();

/** Resolved once per definition and set: what the engine is configured with and the oracle predicts from. */
export function resolveDefinition(def: LoadedDefinition, set: ScenarioSet): Resolved {
  let bySet = resolvedCache.get(def);
  if (!bySet) {
    bySet = new WeakMap();
    resolvedCache.set(def, bySet);
  }
  let r = bySet.get(set);
  if (!r) {
    r = {
      allowed: allowedPorts(def, () => catalogPorts(set)),
      inspectHosts: inspectionHosts(def, set),
      inspecting: (def.inspection?.mode ?? 'none') !== 'none',
    };
    bySet.set(set, r);
  }
  return r;
}

function inspectionHosts(def: LoadedDefinition, set: ScenarioSet): Set<string> {
  const hosts = new Set((def.inspection?.hosts ?? []).map((h) => resolveHost(h, set).toLowerCase()));
  if (def.inspection?.catalogHosts === 'must-not-inspect') for (const h of spliceHostsOf(set)) hosts.add(h);
  return hosts;
}

/** Whether the exchange's origin speaks TLS (from what its kind asks the lab to serve). */
function speaksTls(x: ProfileExchange, set: ScenarioSet): boolean {
  const kind = kindOf(x);
  if (kind.forwarded) return false;
  const spec = kind.lab(x, catalogRow(set, x))[0];
  return spec?.transport !== 'tcp' && spec?.transport !== 'http';
}

const AFTER_SESSION = ['payload', 'headers', 'protocol', 'tunnel-keepalive'];
/** Checks judged on the CONNECT answer and the TLS handshake, before the agent sends anything. */
const BEFORE_SESSION = ['connect-response', 'tls-interception', 'pinning', 'mtls'];

/**
 * What each engine does whatever its knobs, as measured on it (docs/proxies.md). Each returns a
 * prediction for a check of an exchange it applies to, or undefined.
 */
const ENGINE_TRAITS = {
  /** squid on an ssl-bump port answers 200 to a CONNECT its policy denies and bumps the session to deliver its error page inside TLS. */
  squidBumpsDenied:
    'squid on an ssl-bump port answers 200 to a CONNECT its policy denies and delivers "403 Forbidden" (ERR_ACCESS_DENIED) inside a bumped TLS session, whatever the splice list says',
  /** proxy-chain passes the legacy Proxy-Connection header on to the origin. */
  chainProxyConnection:
    "proxy-chain passes the agent's Proxy-Connection header on to the origin (a hop-by-hop header a forwarding proxy should drop); harmless to most origins",
  /** An intercepting proxy-chain speaks HTTP to the origin behind its 200: a non-HTTP origin never answers the diagnostic probe. */
  chainUnconfirmable:
    'the in-process engine completes TLS itself on an inspected tunnel and speaks HTTP to the origin; behind its 200 a non-HTTP origin (raw TCP, MQTT, APF with mutual TLS) never answers, so the tunnel cannot be confirmed',
  squidPeeksEveryTunnel:
    'squid on an ssl-bump port peeks at every CONNECT for a TLS ClientHello (ssl_bump peek step1), spliced hosts included; a non-TLS protocol cannot be peeked at, so squid closes the tunnel',
  squidUnconfirmableNonHttp:
    'squid bumps the session and speaks HTTP to the origin for the diagnostic probe; a non-HTTP origin (raw TLS stream, MQTT) does not answer it and squid answers itself (HTTP/0.9 transformed) or closes, so the tunnel cannot be confirmed',
  squidHttpInside:
    'squid treats what runs inside a bumped TLS session as HTTP: a non-HTTP protocol (a binary stream, MQTT) gets "400 Bad Request" or no answer',
  squidRewritesHeads:
    'squid re-writes the request head of a bumped HTTP request (header order and case, Content-Length moved up), so the head does not arrive byte-identical',
  squidUnconfirmableCira:
    'squid bumps the CIRA session and cannot present the device certificate to the origin; behind the 200, squid completes TLS itself and closes without an answer from the origin, so the tunnel cannot be confirmed',
};

/** The prediction for one result, or undefined for the check's own default. */
export function predict(
  def: LoadedDefinition,
  key: OracleKey,
  set: ScenarioSet,
  env: OracleEnv,
): Prediction | undefined {
  const r = resolveDefinition(def, set);
  const x = key.exchange;
  const kind = kindOf(x);
  const check = key.check;
  const port = key.port ?? x.port;
  const host = key.host.toLowerCase();
  const auth = def.auth ?? 'none';
  const headers = { ...DEFAULT_HEADERS[def.engine], ...def.headers };

  // --- a proxy that is not there, or rejects every credential -------------------------------------
  const availability = def.availability ?? 'up';
  if (UNREACHABLE.has(availability) || availability === 'auth-loop') return predictAbsent(def, key, set, env);
  if (check === 'fallback') return undefined; // up (or up until it dies): no fallback
  // an up proxy that asks for credentials accepts the agent's (its own default: pass, or skip
  // where the CONNECT was refused before credentials were decided)
  if (check === 'proxy-auth') return undefined;

  // --- forwarded plain HTTP ---------------------------------------------------------------------
  if (kind.forwarded) {
    if (check !== 'headers') return undefined;
    if (headers.proxyAuthorization === 'forward' && auth !== 'none')
      return {
        expect: 'fail',
        reason:
          "the definition forwards Proxy-Authorization to the origin (headers.proxyAuthorization: forward): the agent's credentials leak",
      };
    if (def.engine === 'chain' && headers.proxyAuthorization !== 'forward')
      return { expect: 'warn', reason: ENGINE_TRAITS.chainProxyConnection };
    return undefined;
  }

  const portAllowed = (p: number) => !r.allowed || r.allowed.has(p);
  const isInspected = (p: number) =>
    r.inspecting &&
    (inspects(def.inspection?.mode, r.inspectHosts, host) || (def.engine === 'squid' && !portAllowed(p)));
  const trusted = env.trustInspectionCa === true;
  const tls = speaksTls(x, set);
  /** The agent accepts a re-signed session: it trusts the inspection CA and pins nothing here. */
  const accepted = trusted && !((kind.pinsOrigin ?? true) && (key.pinned || key.mustNotInspect));
  /** The agent's exchange works on port p (for failover: whether it had to, and whether it could). */
  const sessionOk = (p: number) =>
    portAllowed(p) && !(isInspected(p) && (!accepted || breaksInside(def.engine, kind.id)));

  // --- failover (to another port of the same host) ----------------------------------------------
  if (check === 'failover') {
    const fo = x.failover?.port;
    if (fo === undefined || sessionOk(x.port)) return undefined; // not needed: skip
    if (sessionOk(fo))
      return {
        expect: 'pass',
        reason: `port ${x.port} does not work through this proxy; the agent fails over to ${fo}, which does`,
      };
    return {
      expect: 'fail',
      reason: portAllowed(fo)
        ? `port ${x.port} does not work and port ${fo}, where the agent fails over, is inspected too: the agent's session breaks there as well (it refuses the re-signed certificate, or its protocol does not survive the inspection)`
        : `neither port ${x.port} nor the failover port ${fo} is in connectPorts`,
    };
  }

  // --- CONNECT refused by port ------------------------------------------------------------------
  const list = r.allowed ? [...r.allowed].sort((a, b) => a - b).join(', ') : '';
  if (!portAllowed(port)) {
    if (check === 'connect')
      return {
        expect: 'fail',
        reason:
          def.engine === 'squid' && r.inspecting
            ? `port ${port} is not in connectPorts (${list}); ${ENGINE_TRAITS.squidBumpsDenied}, and the diagnostic connection quotes it`
            : `port ${port} is not in connectPorts (${list}): the proxy refuses the CONNECT`,
      };
    // squid answered 200 cleanly and re-signed the session: the TLS-level checks are judged
    if (def.engine === 'squid' && r.inspecting && tls && BEFORE_SESSION.includes(check))
      return inspectedTls(check, key, kind.pinsOrigin ?? true, trusted, ENGINE_TRAITS.squidBumpsDenied);
    return {
      expect: 'dependency_fail',
      reason: `the CONNECT to port ${port} was refused, so nothing after it could run`,
    };
  }

  // --- the CONNECT answer (in-process engine) ---------------------------------------------------
  const a = def.connectAnswer;
  const strict = x.strictConnect === true;
  if (a && strict) {
    const loose =
      (a.version ?? 'HTTP/1.1') !== 'HTTP/1.1' || (a.status ?? 200) !== 200 || (a.headers?.length ?? 0) > 0;
    if (loose) {
      if (check === 'connect-response')
        return {
          expect: 'fail',
          reason:
            'the definition\'s connectAnswer is not a bare "HTTP/1.1 200": a strict CONNECT client (Intel AMT) rejects it',
        };
      if (check !== 'connect')
        return {
          expect: 'dependency_fail',
          reason: 'the strict client rejected the CONNECT answer, so nothing after it ran',
        };
    }
  }

  // --- TLS inspection ---------------------------------------------------------------------------
  if (isInspected(port)) {
    if (!tls) {
      if (check === 'payload')
        return {
          expect: 'fail',
          reason:
            'the proxy inspects this host and expects TLS on the tunnel; a non-TLS protocol cannot be inspected, so the tunnel is closed',
        };
      if (check === 'connect' && def.engine === 'chain')
        return { expect: 'warn', reason: ENGINE_TRAITS.chainUnconfirmable };
      if (AFTER_SESSION.includes(check))
        return {
          expect: 'dependency_fail',
          reason: 'the tunnel was closed on the first non-TLS bytes, so nothing more ran',
        };
      return undefined;
    }
    if (check === 'connect') {
      // the agent's own session confirms the tunnel only when it accepted it
      if (accepted) return undefined;
      if (def.engine === 'chain' && (kind.id === 'mqtt' || kind.id === 'cira'))
        return { expect: 'warn', reason: ENGINE_TRAITS.chainUnconfirmable };
      if (def.engine === 'squid' && kind.id === 'cira')
        return { expect: 'warn', reason: ENGINE_TRAITS.squidUnconfirmableCira };
      if (def.engine === 'squid' && (kind.id === 'mqtt' || kind.id === 'tls-stream'))
        return { expect: 'warn', reason: ENGINE_TRAITS.squidUnconfirmableNonHttp };
      return undefined;
    }
    const judged = inspectedTls(
      check,
      key,
      kind.pinsOrigin ?? true,
      trusted,
      'the proxy inspects this host (inspection knob)',
    );
    if (judged || !accepted || !AFTER_SESSION.includes(check)) return judged;
    return insideAcceptedSession(def.engine, kind.id, check);
  }

  // squid inspecting some hosts peeks at every tunnel, also those it would splice
  if (def.engine === 'squid' && r.inspecting && !tls) {
    if (check === 'payload') return { expect: 'fail', reason: ENGINE_TRAITS.squidPeeksEveryTunnel };
    if (AFTER_SESSION.includes(check))
      return {
        expect: 'dependency_fail',
        reason: 'the tunnel was closed on the first non-TLS bytes, so nothing more ran',
      };
  }

  // --- timers -----------------------------------------------------------------------------------
  if (check === 'tunnel-keepalive') return timerPrediction(def, x, env);
  return undefined;
}

/** Whether an exchange of this kind breaks inside a re-signed session the agent accepted. */
function breaksInside(engine: string, kindId: string): boolean {
  return kindId === 'cira' || (engine === 'squid' && (kindId === 'mqtt' || kindId === 'tls-stream'));
}

/** What happens inside a re-signed session the agent accepted (it trusts the inspection CA). */
function insideAcceptedSession(engine: string, kindId: string, check: string): Prediction | undefined {
  if (kindId === 'cira') {
    if (check === 'protocol')
      return {
        expect: 'fail',
        reason:
          'the proxy terminates TLS and cannot present the device certificate to the CIRA server, which never answers the APF handshake',
      };
    return { expect: 'dependency_fail', reason: 'the APF session was not set up, so nothing more ran' };
  }
  if (engine !== 'squid') return undefined;
  if (kindId === 'https' && check === 'headers')
    return { expect: 'fail', reason: ENGINE_TRAITS.squidRewritesHeads };
  if (kindId === 'tls-stream' && check === 'payload')
    return { expect: 'fail', reason: ENGINE_TRAITS.squidHttpInside };
  if (kindId === 'mqtt') {
    if (check === 'protocol') return { expect: 'fail', reason: ENGINE_TRAITS.squidHttpInside };
    return { expect: 'dependency_fail', reason: 'the MQTT handshake failed, so nothing more ran' };
  }
  return undefined;
}

/** Checks of a TLS session the proxy re-signed. */
function inspectedTls(
  check: string,
  key: OracleKey,
  pins: boolean,
  trusted: boolean,
  why: string,
): Prediction | undefined {
  const sensitive = key.mustNotInspect === true;
  switch (check) {
    case 'tls-interception':
      return sensitive
        ? { expect: 'fail', reason: `${why}; the vendor says this host must not be inspected` }
        : {
            expect: 'warn',
            reason: `${why}; the vendor does not forbid inspecting this host, so it is a warning`,
          };
    case 'pinning':
      return sensitive || key.pinned
        ? {
            expect: 'fail',
            reason: `${why}; the substituted key is the inspection CA's leaf, so a pinned agent fails closed`,
          }
        : undefined;
    case 'mtls':
      return {
        expect: 'fail',
        reason: `${why}; an intercepting proxy terminates TLS and cannot present the device certificate`,
      };
    default:
      if (!AFTER_SESSION.includes(check)) return undefined;
      if (!trusted)
        return {
          expect: 'dependency_fail',
          reason: `${why}; the agent refused the re-signed TLS session (it does not trust the inspection CA), so nothing was sent`,
        };
      if (pins && (sensitive || key.pinned))
        return {
          expect: 'dependency_fail',
          reason: `${why}; the agent pins this host's key and refused the substituted one, so nothing was sent`,
        };
      return undefined;
  }
}

/** tunnel-keepalive from the definition's timers and how long the run waits to see them. */
function timerPrediction(def: LoadedDefinition, x: ProfileExchange, env: OracleEnv): Prediction | undefined {
  const needs = kindOf(x).tunnelNeeds?.(x);
  if (!needs) return undefined;
  const wait = timerWait(needs, env.timeScale, env.timerWait);
  const need = needs.gapSeconds + gapMargin(needs.gapSeconds);
  const idle = def.idleTimeoutSeconds;
  const life = def.lifetimeSeconds;
  if (life !== undefined && life < needs.sessionSeconds && life < wait)
    return {
      expect: 'fail',
      reason: `the definition closes tunnels ${life} s after they open (lifetimeSeconds); the agent's session lasts ${needs.sessionSeconds} s`,
    };
  if (idle !== undefined && idle < need && idle < wait)
    return {
      expect: 'fail',
      reason: `the definition closes tunnels silent for ${idle} s (idleTimeoutSeconds); the agent is silent up to ${needs.gapSeconds} s between keep-alives`,
    };
  if ((idle !== undefined && idle < need) || (life !== undefined && life < needs.sessionSeconds))
    return {
      expect: 'skip',
      reason: `the definition's timer (${idle ?? life} s) is longer than the ${wait} s the run waits in real time, so the run cannot see it (raise --timer-wait)`,
    };
  return undefined;
}

/** Why the agent cannot use a proxy in this availability state. */
const ABSENT_REASON: Record<string, string> = {
  refused:
    'nothing listens at the configured proxy address (availability: refused), so the TCP connection is refused',
  blackhole:
    'the configured proxy never answers the TCP SYN (availability: blackhole), so the agent gives up at its connect deadline',
  unresolvable:
    "the configured proxy's host name does not resolve on the machine (availability: unresolvable)",
  'auth-loop': 'the proxy answers 407 to every credential (availability: auth-loop)',
};

/** A proxy that is not there (refused, blackhole, unresolvable) or answers 407 forever. */
function predictAbsent(
  def: LoadedDefinition,
  key: OracleKey,
  set: ScenarioSet,
  env: OracleEnv,
): Prediction | undefined {
  const x = key.exchange;
  const check = key.check;
  const availability = def.availability ?? 'up';
  const why = ABSENT_REASON[availability] as string;
  const entry = kindOf(x).forwarded ? 'forward' : 'connect';
  const failOpen = x.proxyUnreachable?.fallback === 'auto-detect' && availability !== 'auth-loop';
  // the agent's credentials, rejected round after round
  if (check === 'proxy-auth')
    return availability === 'auth-loop' ? { expect: 'fail', reason: why } : undefined;
  if (!failOpen) {
    if (check === entry) return { expect: 'fail', reason: why };
    if (check === 'failover')
      return { expect: 'fail', reason: `${why}; the failover port goes through the same proxy` };
    if (check === 'fallback') return undefined; // auth-loop: the proxy answered, no fallback (skip)
    return { expect: 'dependency_fail', reason: `${why}; the agent stays offline, so nothing after it ran` };
  }
  // fail-open: the agent takes the route auto detect finds
  if (check === entry) return { expect: 'fail', reason: why };
  const route = fallbackRoute(def, key, env);
  const p = x.proxyUnreachable;
  const slow =
    availability === 'blackhole' &&
    p?.connectDeadlineSeconds !== undefined &&
    p.fallbackWithinSeconds !== undefined &&
    p.connectDeadlineSeconds >= p.fallbackWithinSeconds;
  if (check === 'fallback')
    return !route.ok
      ? { expect: 'fail', reason: `${why}; ${route.why}` }
      : slow
        ? {
            expect: 'fail',
            reason: `${why}: the agent waits its ${p?.connectDeadlineSeconds} s connect deadline, more than the ${p?.fallbackWithinSeconds} s its profile allows to be on the fallback route`,
          }
        : { expect: 'pass', reason: `${why}; auto detect gives ${route.label}, which works` };
  if (!route.ok)
    return { expect: 'dependency_fail', reason: `${why}; ${route.why}, so nothing after it ran` };
  // the later checks describe the route the agent fell back to
  return route.via ? predict(route.via, key, set, env) : undefined;
}

/** The route auto detect gives a fail-open agent, from its client network and the script's answer. */
function fallbackRoute(
  def: LoadedDefinition,
  key: OracleKey,
  env: OracleEnv,
): { ok: true; label: string; via?: LoadedDefinition } | { ok: false; why: string } {
  const c = def.client ?? {};
  const directOk = (c.direct ?? 'allowed') === 'allowed';
  const direct = directOk
    ? ({ ok: true, label: 'DIRECT' } as const)
    : ({
        ok: false,
        why: "auto detect gives DIRECT, which the machine's firewall blocks (client.direct: blocked)",
      } as const);
  if ((c.autoDetect ?? 'none') === 'none' || !c.pacFile) {
    if (c.autoDetect === 'pac' && !c.pacFile)
      return { ok: false, why: 'the proxy script is not known before the run' };
    return direct;
  }
  const answer = env.autoDetect?.(def.id, key.host, key.port ?? key.exchange.port);
  if (!answer) return { ok: false, why: 'the run did not evaluate the proxy script' };
  const d = answer.discovery;
  if (!d.ok) return { ok: false, why: `the proxy script ${d.source} fails (${d.stage}: ${d.error})` };
  for (const e of d.entries) {
    if (e.type === 'DIRECT') {
      if (directOk) return { ok: true, label: `DIRECT (script "${d.answer}")` };
      continue;
    }
    const via = answer.proxies.get(`${e.host}:${e.port}`);
    if (e.type === 'PROXY' && via) return { ok: true, label: `PROXY ${via.id} (script "${d.answer}")`, via };
  }
  return { ok: false, why: `no route in the script's answer "${d.answer}" works` };
}
