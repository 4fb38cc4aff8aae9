/**
 * judgeTimers (harness/checks/tunnel-keepalive.ts): the replayed session runs on compressed time,
 * so tunnel-keepalive is decided by what the real-time probes measured. An idle timer below the
 * agent's silence gap fails, a lifetime cap below its session fails and is called a lifetime cap,
 * and a run that did not wait long enough never passes.
 */
import t from 'tap';
import { judgeTimers, type TimerProbe } from '../harness/checks/tunnel-keepalive.ts';
import type { Verdict } from '../harness/checks/types.ts';

const agent: Verdict = {
  outcome: 'pass',
  message: 'the session lasted 3000 ms of the required 3000 ms',
  evidence: {},
  durationMs: 3000,
};
const cira = { gapSeconds: 30, sessionSeconds: 300 };
const survived = (s: number): TimerProbe => ({ lastedMs: s * 1000 });
const closed = (atS: number, lastTrafficS: number, sinceDialS = atS + 0.1): TimerProbe => ({
  lastedMs: atS * 1000,
  ending: {
    atMs: atS * 1000,
    lastTrafficAtMs: lastTrafficS * 1000,
    sinceDialMs: sinceDialS * 1000,
    how: 'TCP FIN',
  },
});

t.test('a 30 s idle timer never passes an agent silent for 30 s, whatever the wait', async (t) => {
  for (const wait of [10, 40, 400]) {
    // the silent probe was closed 30 s after its last byte; the busy one held the whole wait
    const silent = wait > 30 ? closed(30, 0) : survived(wait);
    const v = judgeTimers(agent, silent, survived(wait), cira, wait, '--timer-wait');
    t.not(v.outcome, 'pass', `wait ${wait}: ${v.message}`);
    if (wait > 30) {
      t.equal(v.outcome, 'fail');
      t.match(v.message, /idle timer: the proxy closed a silent tunnel after 30 s/);
      t.equal((v.evidence.timers as { timer: string }).timer, 'idle');
    } else {
      t.equal(v.outcome, 'skip');
      t.ok(v.notKnown, 'not known: expected as skip by default');
      t.match(v.message, /Run with --timer-wait 300/);
    }
  }
});

t.test('an 8 s read_timeout fails CIRA within the default 10 s wait, with the measured timer', async (t) => {
  const v = judgeTimers(agent, closed(8.1, 0.1), survived(10), cira, 10, '--timer-wait');
  t.equal(v.outcome, 'fail');
  t.match(v.message, /after 8 s without traffic/);
  t.match(v.message, /silent up to 30 s between keep-alives/);
});

t.test('a 5 s lifetime cap is a lifetime cap, not an idle timer', async (t) => {
  // both probes die at ~5 s from dialling: the busy one had traffic a moment before
  const v = judgeTimers(
    agent,
    closed(4.8, 0, 5.0),
    closed(4.8, 4.5, 5.0),
    { gapSeconds: 5, sessionSeconds: 600 },
    10,
    '--timer-wait',
  );
  t.equal(v.outcome, 'fail');
  t.match(v.message, /^lifetime cap: the proxy closed a busy tunnel 5 s after it was opened/);
  const e = v.evidence.timers as { timer: string; lifetimeCapSeconds: number };
  t.equal(e.timer, 'lifetime');
  t.equal(e.lifetimeCapSeconds, 5);
});

t.test('passes only when the silence and the whole session were outlasted in real time', async (t) => {
  const ra = { gapSeconds: 5, sessionSeconds: 600 };
  const short = judgeTimers(agent, survived(10), survived(10), ra, 10, '--timer-wait');
  t.equal(short.outcome, 'skip', 'a 10 s wait cannot know a 600 s session');
  t.match(short.message, /whether it lasts the 600 s session/);
  t.notMatch(short.message, /survives the agent's 5 s of silence/, 'the silence part is known');
  const full = judgeTimers(agent, survived(600), survived(600), ra, 600, '--timer-wait');
  t.equal(full.outcome, 'pass', full.message);
  const failedSession = judgeTimers(
    { ...agent, outcome: 'fail', message: 'stalled' },
    survived(600),
    survived(600),
    ra,
    600,
    '--timer-wait',
  );
  t.equal(failedSession.outcome, 'fail', 'a replayed session that broke still fails');
});
