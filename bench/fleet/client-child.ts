/**
 * The bench's clients, each run in a process of its own so its RSS is its own:
 *  - `generator-hold N SECONDS`: N remote-assistance agents of `proxycheck load` (harness/load/
 *    agents.ts: CONNECT, TLS, WebSocket, a ping every 5 s as the profile says) held for SECONDS;
 *  - `bare-hold N SECONDS`: the reference, plain Node: CONNECT, TLS, 4 bytes echoed every 5 s;
 *  - `generator-loop C SECONDS` / `bare-loop C SECONDS`: C workers opening CONNECT+TLS sessions one
 *    after another (the generator's own session opening vs plain Node) for SECONDS.
 * Reads `{"proxyPort","ca","net"}` from argv[2] (JSON); prints one JSON line with what it measured.
 */
import net from 'node:net';
import tls from 'node:tls';
import {
  type AgentContext,
  newCounters,
  openSession,
  runSession,
  stopSignal,
} from '../../harness/load/agents.ts';
import { PhaseRecorder } from '../../harness/load/histograms.ts';
import type { SessionPlan } from '../../harness/load/model.ts';

const HOST = 'ras.flexxible.com';
const KEEPALIVE_S = 5;
const [setupJson, mode, nArg, secondsArg] = process.argv.slice(2);
const setup = JSON.parse(setupJson as string) as { proxyPort: number; ca: string };
const n = Number(nArg);
const seconds = Number(secondsArg);
const plan: SessionPlan = {
  kind: 'hold',
  exchange: 'remote-assistance',
  host: HOST,
  port: 443,
  path: '/ws/session',
  userAgent: 'FlexxAgent/25.4',
  keepaliveSeconds: KEEPALIVE_S,
};

function context(signal: ReturnType<typeof stopSignal>): AgentContext {
  const t0 = performance.now();
  return {
    proxy: { host: '127.0.0.1', port: setup.proxyPort },
    ca: [setup.ca],
    recorder: new PhaseRecorder(t0),
    counters: newCounters(),
    deadlines: { connectMs: 30_000, answerMs: 30_000, tlsMs: 30_000, requestMs: 30_000 },
    timeScale: 1,
    t0,
    stopped: signal.stopped,
    isStopped: signal.isStopped,
    open: { n: 0 },
  };
}

/** Plain Node: CONNECT through the proxy, then TLS to the origin. */
function bareSession(): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port: setup.proxyPort }, () =>
      s.write(`CONNECT ${HOST}:443 HTTP/1.1\r\nHost: ${HOST}:443\r\n\r\n`),
    );
    s.once('error', reject);
    let head = '';
    const onData = (d: Buffer) => {
      head += d.toString('latin1');
      if (!head.includes('\r\n\r\n')) return;
      s.off('data', onData);
      if (!/^HTTP\/1\.[01] 200/.test(head)) return reject(new Error(head.split('\r\n')[0]));
      const t = tls.connect({ socket: s, servername: HOST, ca: [setup.ca] }, () => resolve(t));
      t.once('error', reject);
    };
    s.on('data', onData);
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const out = (o: object) => process.stdout.write(`${JSON.stringify(o)}\n`);

if (mode === 'generator-loop' || mode === 'bare-loop') {
  let sessions = 0;
  let errors = 0;
  const until = performance.now() + seconds * 1000;
  const ctx = context(stopSignal());
  await Promise.all(
    Array.from({ length: n }, async () => {
      while (performance.now() < until) {
        try {
          const s = mode === 'bare-loop' ? await bareSession() : await openSession(ctx, plan);
          s.destroy();
          sessions++;
        } catch {
          errors++;
        }
      }
    }),
  );
  out({ sessions, errors, seconds });
} else {
  // open the tunnels over a ramp of at most 20 s, hold them `seconds` once all are open
  const ramp = Math.min(20_000, n * 4);
  const signal = stopSignal();
  let held = 0;
  let drops = 0;
  let errors = 0;
  const sessions: Promise<void>[] = [];
  if (mode === 'generator-hold') {
    const ctx = context(signal);
    for (let i = 0; i < n; i++) {
      sessions.push(runSession(ctx, plan));
      await sleep(ramp / n);
    }
    await sleep(2_000);
    held = ctx.open.n;
    await sleep(seconds * 1000);
    const rss = process.memoryUsage().rss;
    drops = ctx.counters.drops;
    errors = [...ctx.counters.errors.values()].reduce((s, e) => s + e.count, 0);
    const stillHeld = ctx.open.n;
    signal.stop();
    await Promise.all(sessions);
    out({ held, stillHeld, drops, errors, rss, keepalives: ctx.counters.keepalives });
  } else {
    const open = new Set<tls.TLSSocket>();
    let keepalives = 0;
    for (let i = 0; i < n; i++) {
      sessions.push(
        bareSession().then(
          (s) => {
            open.add(s);
            s.on('error', () => {});
            s.on('close', () => {
              if (open.delete(s) && !signal.isStopped()) drops++;
            });
            const timer = setInterval(() => {
              s.write('ping');
              s.once('data', () => keepalives++);
            }, KEEPALIVE_S * 1000);
            s.on('close', () => clearInterval(timer));
          },
          () => {
            errors++;
          },
        ),
      );
      await sleep(ramp / n);
    }
    await Promise.all(sessions);
    await sleep(2_000);
    held = open.size;
    await sleep(seconds * 1000);
    const rss = process.memoryUsage().rss;
    const stillHeld = open.size;
    signal.stop();
    for (const s of open) s.destroy();
    out({ held, stillHeld, drops, errors, rss, keepalives });
  }
}
process.exit(0);
