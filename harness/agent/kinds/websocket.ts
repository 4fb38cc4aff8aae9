/**
 * `websocket`: a long-lived bidirectional WebSocket session inside the verified TLS tunnel
 * (FlexxAgent remote assistance, ras.flexxible.com). Over `session.seconds` (scaled; `idleSeconds`
 * replaces it) the agent ticks every `intervalSeconds`: `bursts` times it sends `burstBytes` and the
 * origin answers with a burst of its own (lab service ws-session), both hashed; on the other ticks
 * it sends a WebSocket ping and waits for the pong. Checks: connect, fallback (when the profile
 * says the agent falls back to auto detect), tls-interception, pinning, protocol (101 and the
 * subprotocol), payload (every burst's SHA-256 both ways), tunnel-keepalive (the session lasted).
 *
 * Fallback (harness/route/policies.ts): when the proxy itself cannot be reached and the profile
 * says the agent falls back, it runs the same session on the route auto detect finds; the other
 * checks then describe that session (evidence `route`). A proxy that answers, even 403, is reachable.
 *
 * The session itself (plan, runner, records) is agent/ws-session.ts; this module runs it on the
 * channel and judges the record.
 */
import { SESSION_SUBPROTOCOL } from '../../lab/services/ws-session.ts';
import { openChannel } from '../channel.ts';
import { DEFAULTS, runSession, type SessionRun } from '../ws-session.ts';
import { answerHead } from '../wsclient.ts';
import type { ExchangeKind, KindContext, KindVerdicts } from './types.ts';

const AFTER_CHANNEL = ['protocol', 'payload', 'tunnel-keepalive'];

export const websocketKind: ExchangeKind = {
  id: 'websocket',
  options: {
    path: { type: 'string', pattern: '^/' },
    session: { $ref: '#/$defs/session' },
  },
  checks: () => ['connect', 'tls-interception', 'pinning', ...AFTER_CHANNEL],
  lab: (x) => [{ port: x.port, transport: 'https' }],
  // the agent is silent between its ticks (a burst or a ping each interval)
  tunnelNeeds: (x) => ({
    gapSeconds: x.session?.intervalSeconds ?? x.session?.keepaliveSeconds ?? DEFAULTS.intervalSeconds,
    sessionSeconds: x.session?.seconds ?? DEFAULTS.seconds,
  }),
  run: runWebsocket,
};

function judgeSession(ctx: KindContext, s: SessionRun, out: KindVerdicts): void {
  const { plan, route, open } = s;
  if (!open.ok) {
    out.set('protocol', {
      outcome: 'fail',
      message: open.error,
      evidence: {
        ...route,
        url: urlOf(ctx),
        ...(open.answer ? { answerHead: answerHead(open.answer) } : {}),
      },
      durationMs: open.ms,
    });
    return;
  }
  out.set('protocol', {
    outcome: 'pass',
    message: `"${open.answer.statusLine}", subprotocol ${open.answer.subprotocol} accepted`,
    evidence: {
      ...route,
      url: urlOf(ctx),
      answerHead: answerHead(open.answer),
      offeredSubprotocols: [SESSION_SUBPROTOCOL],
      acceptedSubprotocol: open.answer.subprotocol,
    },
    durationMs: open.ms,
  });

  // payload
  const done = s.bursts.filter((b) => b.downSha256 !== undefined);
  const upBytes = done.reduce((a, b) => a + b.upBytes, 0);
  const downBytes = done.reduce((a, b) => a + (b.downBytes ?? 0), 0);
  let bad: string | undefined;
  for (const b of done) {
    if (b.originUpSha256 !== b.upSha256) {
      bad = `burst ${b.seq} upstream: the origin received ${b.originUpBytes} bytes with SHA-256 ${String(b.originUpSha256).slice(0, 16)}…, the agent sent ${b.upBytes} with ${b.upSha256.slice(0, 16)}…`;
      break;
    }
    if (b.downSha256 !== b.downDeclaredSha256) {
      bad = `burst ${b.seq} downstream: the agent received ${b.downBytes} bytes with SHA-256 ${String(b.downSha256).slice(0, 16)}…, the origin sent ${b.downDeclaredBytes} with ${String(b.downDeclaredSha256).slice(0, 16)}…`;
      break;
    }
  }
  const payloadEvidence = {
    ...route,
    burstsPlanned: plan.bursts,
    burstsDone: done.length,
    bytesUp: upBytes,
    bytesDown: downBytes,
    bursts: s.bursts,
  };
  if (bad) {
    out.set('payload', { outcome: 'fail', message: bad, evidence: payloadEvidence, durationMs: s.lastedMs });
  } else if (done.length < plan.bursts) {
    const why = s.ending ? 'the tunnel closed' : `the session stalled (${s.stalled})`;
    out.set('payload', {
      outcome: s.ending ? 'dependency_fail' : 'fail',
      message: `${s.ending ? 'not run in full: ' : ''}${why} after ${done.length} of ${plan.bursts} bursts (every one done was intact both ways)`,
      evidence: { ...payloadEvidence, dependsOn: 'tunnel-keepalive' },
      durationMs: s.lastedMs,
    });
  } else {
    out.set('payload', {
      outcome: 'pass',
      message: `${done.length} bursts of ${plan.burstBytes} bytes each way (${upBytes} up, ${downBytes} down), every SHA-256 equal in both directions`,
      evidence: payloadEvidence,
      durationMs: s.lastedMs,
    });
  }

  // tunnel-keepalive
  const scale =
    ctx.idleSeconds !== undefined
      ? `${plan.requiredSeconds} s (--idle-seconds)`
      : `${plan.requiredSeconds} s at time scale ${ctx.timeScale}`;
  const keepEvidence = {
    ...route,
    requiredSeconds: plan.requiredSeconds,
    requiredMs: plan.requiredMs,
    timeScale: ctx.timeScale,
    intervalMs: plan.intervalMs,
    lastedMs: s.lastedMs,
    pingsSent: s.pingsSent,
    pingsAnswered: s.pongs,
    maxPingRttMs: s.maxPingRttMs,
    burstsDone: done.length,
    ...(s.ending ? { ending: s.ending } : {}),
    ...(s.stalled ? { stalled: s.stalled } : {}),
  };
  if (s.completed && s.lastedMs >= plan.requiredMs) {
    out.set('tunnel-keepalive', {
      outcome: 'pass',
      message: `the session lasted ${s.lastedMs} ms of the required ${plan.requiredMs} ms (${scale}); ${s.pongs} of ${s.pingsSent} pings answered, ${done.length} bursts`,
      evidence: keepEvidence,
      durationMs: s.lastedMs,
    });
  } else if (s.ending) {
    const e = s.ending;
    out.set('tunnel-keepalive', {
      outcome: 'fail',
      message: `the tunnel closed after ${e.atMs} ms of the required ${plan.requiredMs} ms (${scale}), ${e.sinceDialMs} ms after the agent dialled: ${e.how} ${e.during}; last completed step: ${e.after}; last bytes from the origin at ${e.lastTrafficAtMs} ms (${e.atMs - e.lastTrafficAtMs} ms before the close)`,
      evidence: keepEvidence,
      durationMs: s.lastedMs,
    });
  } else if (s.completed) {
    out.set('tunnel-keepalive', {
      outcome: 'harness_fail',
      message: `harness error: the session ended its steps after ${s.lastedMs} ms, before the required ${plan.requiredMs} ms`,
      evidence: keepEvidence,
      durationMs: s.lastedMs,
    });
  } else {
    out.set('tunnel-keepalive', {
      outcome: 'fail',
      message: `the session stalled after ${s.lastedMs} ms of the required ${plan.requiredMs} ms (${scale}): ${s.stalled}; the tunnel stayed open but stopped carrying data`,
      evidence: keepEvidence,
      durationMs: s.lastedMs,
    });
  }
}

function urlOf(ctx: KindContext): string {
  return `wss://${ctx.host}${ctx.port === 443 ? '' : `:${ctx.port}`}${ctx.exchange.path ?? '/ws/session'}`;
}

async function runWebsocket(ctx: KindContext): Promise<KindVerdicts> {
  const out: KindVerdicts = new Map();
  const dialledAt = performance.now();
  const channel = await openChannel(ctx, out, { dependents: AFTER_CHANNEL });
  if (!channel) return out;
  const route =
    ctx.route.via === 'proxy' ? { route: 'proxy' } : { route: ctx.route.label, ...channel.tlsEvidence };
  const s = await runSession(ctx, channel.socket, route, dialledAt);
  judgeSession(ctx, s, out);
  return out;
}
