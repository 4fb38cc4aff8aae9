/**
 * `tunnel-keepalive`: a long-lived tunnel stays open for the whole session, and the silence the
 * agent leaves between keep-alives never trips the proxy's idle timer. Judged in real time
 * (harness/route/timers.ts measures the proxy's timers with the tunnel in the state the agent
 * leaves it): a silent tunnel shows an idle timer, a busy one a lifetime cap. The replayed session
 * itself runs on compressed time, so it alone never passes this check; a run that did not wait
 * long enough to know says so (`skip`, with the option that makes it wait).
 */
import type { CheckResult } from '../model.ts';
import { type CheckDefinition, ROUTE, type Verdict } from './types.ts';

export const tunnelKeepalive: CheckDefinition = {
  id: 'tunnel-keepalive',
  title: 'Long-lived tunnel stays up',
  dependsOn: [ROUTE, 'connect-response', 'tls-interception', 'pinning', 'protocol'],
  blocks: 'the tunnel did not stay up',
  explain: (c) =>
    `A long-lived tunnel to ${c.host}:${c.port} stays open for the whole session (real time), the silence between the agent's keep-alives never trips the proxy's idle timer, and every keep-alive is answered.`,
  remediation(c, v) {
    const t = (v.evidence.timers ?? {}) as Partial<TimerEvidence>;
    if (t.timer === 'lifetime')
      return `The proxy ends CONNECT tunnels to ${c.host}:${c.port} after ${t.lifetimeCapSeconds} s even while traffic flows (a lifetime cap): allow tunnels to live at least ${t.sessionSeconds} s, the agent's session (the proxy's maximum connection or session time, or a firewall's session limit on the way; squid has no such cap on tunnels).`;
    if (t.timer === 'idle')
      return `The proxy closes CONNECT tunnels to ${c.host}:${c.port} after ${t.idleTimerSeconds} s of silence (an idle timer): the agent is silent up to ${t.agentGapSeconds} s between keep-alives, so raise the idle timeout for tunnels above that (squid: read_timeout; other products: idle/inactivity timeout).`;
    return `The proxy closed the tunnel to ${c.host}:${c.port} early: allow long-lived CONNECT tunnels (idle timeout above the agent's keep-alive interval, no lifetime cap below its session).`;
  },
  // how long tunnels must stay open while silent, and at all
  collectRemedy(results, facts) {
    for (const r of results.filter((x) => x.check === 'tunnel-keepalive' && x.outcome === 'fail')) {
      const t = (r.evidence.timers ?? {}) as Partial<TimerEvidence>;
      if (t.timer === 'lifetime' && t.sessionSeconds !== undefined)
        facts.lifetimeSeconds = Math.max(facts.lifetimeSeconds ?? 0, t.sessionSeconds);
      else if (t.timer === 'idle' && t.state === 'inspected' && t.agentGapSeconds !== undefined)
        facts.idleInspectedSeconds = Math.max(facts.idleInspectedSeconds ?? 0, t.agentGapSeconds);
      else {
        const need = t.agentGapSeconds ?? requiredOf(r);
        if (need !== undefined) facts.idleSeconds = Math.max(facts.idleSeconds ?? 0, need);
      }
    }
  },
};

function requiredOf(r: CheckResult): number | undefined {
  const e = r.evidence;
  return typeof e.requiredSeconds === 'number' ? e.requiredSeconds : undefined;
}

/** What the agent needs of a tunnel, in real seconds (from its profile). */
export interface TunnelNeeds {
  /** The longest silence between its keep-alives. */
  gapSeconds: number;
  /** How long its session lasts. */
  sessionSeconds: number;
}

/** A session held to measure the proxy's timers, as its tunnel-keepalive verdict reports it. */
export interface TimerProbe {
  /** The session lasted this long (ms since it was set up). */
  lastedMs: number;
  /** It ended because the tunnel closed: when, and when bytes last came. */
  ending?: { atMs: number; lastTrafficAtMs: number; sinceDialMs: number; how: string };
  /** It stalled with the tunnel open, or failed otherwise. */
  problem?: string;
}

export interface TimerEvidence {
  timer?: 'idle' | 'lifetime';
  /** The tunnel's state: relayed as bytes (spliced, or no inspection), or inspected (bumped). */
  state: 'tunnelled' | 'inspected';
  idleTimerSeconds?: number;
  lifetimeCapSeconds?: number;
  silenceSurvivedSeconds?: number;
  busySurvivedSeconds?: number;
  agentGapSeconds: number;
  sessionSeconds: number;
  waitedSeconds: number;
  how: string;
}

const s1 = (ms: number) => Math.round(ms / 100) / 10;
/** A tunnel must outlast the agent's gap by this much (a timer equal to the gap races the keep-alive). */
export const gapMargin = (gapSeconds: number) => Math.max(1, gapSeconds * 0.1);
/** How much less silence a busy tunnel must have had when it closed, to call it a lifetime cap. */
const BUSY_MARGIN_MS = 300;

/**
 * The verdict from what the replayed (compressed) session saw and what the two real-time probes
 * measured: a `silent` session (no byte after set-up for `waitSeconds`) and a `busy` one (a
 * keep-alive every 250 ms for `waitSeconds`); the replayed session counts as busy too. `waitOption` names what makes a run wait longer.
 */
export function judgeTimers(
  agent: Verdict,
  silent: TimerProbe | undefined,
  busy: TimerProbe | undefined,
  needs: TunnelNeeds,
  waitSeconds: number,
  waitOption: string,
  state: TimerEvidence['state'] = 'tunnelled',
): Verdict {
  const need = needs.gapSeconds + gapMargin(needs.gapSeconds);
  const t: TimerEvidence = {
    state,
    agentGapSeconds: needs.gapSeconds,
    sessionSeconds: needs.sessionSeconds,
    waitedSeconds: waitSeconds,
    how: 'measured in real time with the tunnel in the state the agent leaves it (after its own handshake, spliced or inspected alike): one session silent after set-up, one with a keep-alive every 250 ms',
  };
  const idle = silent?.ending ? silent.ending.atMs - silent.ending.lastTrafficAtMs : undefined;
  // the silence a silent tunnel was granted (it may have outlived the whole wait)
  const silenceGranted = idle ?? (silent && !silent.problem ? silent.lastedMs : undefined);
  // a busy tunnel (the busy probe, or the replayed session with its compressed cadence) closed
  // after less silence than a silent one was granted: not for idleness, a lifetime cap
  const agentEnding = (agent.evidence.ending ?? undefined) as TimerProbe['ending'];
  const lifetimes = [busy?.ending, agentEnding]
    .filter((e): e is NonNullable<TimerProbe['ending']> => e !== undefined)
    .filter(
      (e) => silenceGranted !== undefined && e.atMs - e.lastTrafficAtMs < silenceGranted - BUSY_MARGIN_MS,
    )
    .map((e) => e.sinceDialMs);
  const lifetime = lifetimes.length ? Math.min(...lifetimes) : undefined;
  if (busy && !busy.ending) t.busySurvivedSeconds = s1(busy.lastedMs);
  if (silent && !silent.ending) t.silenceSurvivedSeconds = s1(silent.lastedMs);
  const evidence = { ...agent.evidence, timers: t, requiredSeconds: needs.sessionSeconds };
  const d = agent.durationMs;

  if (lifetime !== undefined && lifetime / 1000 < needs.sessionSeconds) {
    t.timer = 'lifetime';
    t.lifetimeCapSeconds = s1(lifetime);
    return {
      outcome: 'fail',
      message: `lifetime cap: the proxy closed a busy tunnel ${t.lifetimeCapSeconds} s after it was opened, traffic flowing (${(busy?.ending ?? agentEnding)?.how}); the agent's session lasts ${needs.sessionSeconds} s`,
      evidence,
      durationMs: d,
    };
  }
  if (idle !== undefined && idle / 1000 < need) {
    t.timer = 'idle';
    t.idleTimerSeconds = s1(idle);
    return {
      outcome: 'fail',
      message: `idle timer: the proxy closed a silent tunnel after ${t.idleTimerSeconds} s without traffic (${silent?.ending?.how}); the agent is silent up to ${needs.gapSeconds} s between keep-alives`,
      evidence,
      durationMs: d,
    };
  }
  if (agent.outcome !== 'pass') return { ...agent, evidence };
  const idleKnown = (idle !== undefined ? idle : (silent?.lastedMs ?? 0)) / 1000 >= need;
  const lifeKnown = (busy && !busy.ending ? busy.lastedMs : (lifetime ?? 0)) / 1000 >= needs.sessionSeconds;
  const problem = silent?.problem ?? busy?.problem;
  if (idleKnown && lifeKnown) {
    return {
      outcome: 'pass',
      message: `the tunnel outlasted ${s1(idle ?? silent?.lastedMs ?? 0)} s of silence (the agent is silent up to ${needs.gapSeconds} s) and a busy tunnel held ${s1(busy?.lastedMs ?? 0)} s (the session lasts ${needs.sessionSeconds} s), in real time; the replayed session: ${agent.message}`,
      evidence,
      durationMs: d,
    };
  }
  const unknown = [
    ...(idleKnown ? [] : [`whether the tunnel survives the agent's ${needs.gapSeconds} s of silence`]),
    ...(lifeKnown ? [] : [`whether it lasts the ${needs.sessionSeconds} s session`]),
  ];
  const wait = Math.ceil(Math.max(idleKnown ? 0 : need, lifeKnown ? 0 : needs.sessionSeconds));
  return {
    outcome: 'skip',
    message: `not known in ${waitSeconds} s of real time: ${unknown.join(', nor ')}${problem ? ` (a probe failed: ${problem})` : ''}; no idle timer or lifetime cap showed within that time. Run with ${waitOption} ${wait} (or --time-scale 1) to know; the replayed session (compressed): ${agent.message}`,
    evidence,
    durationMs: d,
    notKnown: true,
  };
}
