/**
 * The proxy's tunnel timers, measured in real time while the replayed session runs on compressed
 * time. For an exchange whose kind reports `tunnel-keepalive`, two more sessions of the agent's own
 * protocol go through the same proxy to the same host and port, so each tunnel is in the state the
 * agent leaves it (after its own handshake, spliced or inspected alike):
 *  - silent: set up, then not one byte for `waitSeconds`, then a keep-alive: an idle timer shows;
 *  - busy: a keep-alive every 250 ms for `waitSeconds`: a lifetime cap shows.
 * judgeTimers() (harness/checks/tunnel-keepalive.ts) then holds them against the agent's real
 * silence gap and session length. Both start when the proxy is up and run beside everything else.
 */
import type { ExchangeKind, KindContext, KindVerdicts } from '../agent/kinds/types.ts';
import { judgeTimers, type TimerProbe, type TunnelNeeds } from '../checks/tunnel-keepalive.ts';

/** The busy probe's keep-alive interval, in real seconds. */
const BUSY_CADENCE_S = 0.25;

/** The shortest real-time wait by default, whatever the time scale. */
export const MIN_TIMER_WAIT_S = 10;

/** How long the probes wait: `--timer-wait`, else the session as long as it runs here, at least 10 s. */
export function timerWait(needs: TunnelNeeds, timeScale: number, explicit?: number): number {
  return explicit ?? Math.max(MIN_TIMER_WAIT_S, Math.ceil(needs.sessionSeconds * timeScale));
}

function probeOf(out: KindVerdicts): TimerProbe {
  const v = out.get('tunnel-keepalive');
  const e = (v?.evidence ?? {}) as { lastedMs?: number; ending?: TimerProbe['ending'] };
  const lastedMs = typeof e.lastedMs === 'number' ? e.lastedMs : 0;
  if (e.ending) return { lastedMs, ending: e.ending };
  if (v?.outcome === 'pass') return { lastedMs };
  const why = v?.message ?? [...out.values()].find((x) => x.outcome !== 'pass')?.message ?? 'no session';
  return { lastedMs, problem: why };
}

/** The agent's TLS was re-signed: the proxy holds an inspected (bumped) connection, with other timers. */
function inspected(out: KindVerdicts): boolean {
  return Boolean(out.get('tls-interception')?.evidence.reSignedBy);
}

export interface TimerMeasurement {
  /** Replaces the replayed session's tunnel-keepalive verdict with the real-time judgement. */
  judge(out: KindVerdicts): Promise<void>;
}

/**
 * Starts the two probes for an exchange through a proxy, or returns undefined when the kind does
 * not hold long-lived tunnels.
 */
export function measureTimers(
  kind: ExchangeKind,
  ctx: KindContext,
  opts: { waitSeconds?: number; waitOption: string },
): TimerMeasurement | undefined {
  const needs = kind.tunnelNeeds?.(ctx.exchange);
  if (!needs || ctx.route.via !== 'proxy' || !kind.checks(ctx.exchange).includes('tunnel-keepalive')) return;
  const wait = timerWait(needs, ctx.timeScale, opts.waitSeconds);
  const session = (timeScale: number) => kind.run({ ...ctx, timeScale, idleSeconds: wait });
  const probes = Promise.all([
    // the keep-alive interval stretched to the whole wait: one tick, at the end
    session(wait / needs.gapSeconds).then(probeOf),
    // the keep-alive interval shrunk to a quarter second
    session(BUSY_CADENCE_S / needs.gapSeconds).then(probeOf),
  ]);
  return {
    async judge(out) {
      const [silent, busy] = await probes;
      const agent = out.get('tunnel-keepalive');
      // only a session that went through this proxy is judged against its timers
      if (!agent || out.get('connect')?.outcome !== 'pass' || agent.outcome === 'dependency_fail') return;
      out.set('tunnel-keepalive', {
        ...judgeTimers(
          agent,
          silent,
          busy,
          needs,
          wait,
          opts.waitOption,
          inspected(out) ? 'inspected' : 'tunnelled',
        ),
        ...(agent.endpoint ? { endpoint: agent.endpoint } : {}),
      });
    },
  };
}
