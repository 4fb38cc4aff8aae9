/**
 * The blackhole (harness/proxies/blackhole.ts) over real sockets on 127.0.0.1: a connect to it is
 * neither accepted nor refused for 2 s (the SYN goes unanswered, the socket is still connecting),
 * unlike a connect to a closed port (ECONNREFUSED at once); after stop() its listener process is
 * gone and the port refuses.
 */
import { connect, type Socket } from 'node:net';
import t from 'tap';
import { startBlackhole } from '../harness/proxies/blackhole.ts';
import { pickPort } from '../harness/proxies/toolkit/ports.ts';

const HOLD_MS = 2_000;

/** What a connect did within `ms`: `connected`, an error code, or `connecting` (still SYN-SENT). */
function connectOutcome(port: number, ms: number): Promise<{ outcome: string; socket: Socket }> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    const timer = setTimeout(
      () => resolve({ outcome: socket.connecting ? 'connecting' : socket.readyState, socket }),
      ms,
    );
    socket.once('connect', () => {
      clearTimeout(timer);
      resolve({ outcome: 'connected', socket });
    });
    socket.once('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      resolve({ outcome: err.code ?? err.message, socket });
    });
  });
}

t.test('a blackhole leaves the SYN unanswered; a closed port refuses; stop() ends it', async (t) => {
  const t0 = performance.now();
  const hole = await startBlackhole({ host: '127.0.0.1' });
  t.teardown(() => hole.stop());
  t.comment(`started in ${Math.round(performance.now() - t0)} ms on port ${hole.port} (pid ${hole.pid})`);
  t.equal(hole.host, '127.0.0.1');

  const closed = await pickPort();
  const [held, refused] = await Promise.all([
    connectOutcome(hole.port, HOLD_MS),
    connectOutcome(closed, HOLD_MS),
  ]);
  t.teardown(() => {
    held.socket.destroy();
    refused.socket.destroy();
  });
  t.equal(held.outcome, 'connecting', `the blackhole: still connecting after ${HOLD_MS} ms`);
  t.equal(held.socket.readyState, 'opening');
  t.equal(refused.outcome, 'ECONNREFUSED', 'a closed port refuses');
  held.socket.destroy();

  await hole.stop();
  t.throws(() => process.kill(hole.pid, 0), { code: 'ESRCH' }, 'the listener process is gone');
  const after = await connectOutcome(hole.port, HOLD_MS);
  after.socket.destroy();
  t.equal(after.outcome, 'ECONNREFUSED', 'after stop() the port refuses');
  await hole.stop(); // idempotent
});

t.test('a start that cannot be done fails with one clear line', async (t) => {
  // 192.0.2.1 (TEST-NET-1) is on no interface here: listen fails with EADDRNOTAVAIL
  const bad = await startBlackhole({ host: '192.0.2.1' }).then(
    () => undefined,
    (e: unknown) => e as Error,
  );
  t.match(
    bad?.message,
    /^blackhole on 192\.0\.2\.1: the listener exited \(code 1\) before reporting its port: .*EADDRNOTAVAIL/,
  );
  t.notMatch(bad?.message, /\n/, 'one line');
  const late = await startBlackhole({ host: '127.0.0.1', deadlineMs: 1 }).then(
    () => undefined,
    (e: unknown) => e as Error,
  );
  t.equal(late?.message, 'blackhole on 127.0.0.1 starting: no answer within 1 ms', 'the deadline is named');
});
