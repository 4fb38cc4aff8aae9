/**
 * The proxy adapter toolkit over real sockets and processes: the readiness waits name their
 * deadline, and a launched process reports its exit and is killed when it ignores the stop signal.
 */
import { connect, createServer, type Server, type Socket } from 'node:net';
import t, { type Test } from 'tap';
import { DeadlineError, SetupError } from '../harness/errors.ts';
import { pickPort } from '../harness/proxies/toolkit/ports.ts';
import { launchProcess } from '../harness/proxies/toolkit/process.ts';
import { waitForLine, waitForListening } from '../harness/proxies/toolkit/ready.ts';

/** A listener on 127.0.0.1 (port 0 unless given), closed with its connections when the test ends. */
async function listener(t: Test, port = 0, onSocket?: (s: Socket) => void): Promise<Server> {
  const sockets = new Set<Socket>();
  const srv = createServer((s) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
    if (onSocket) onSocket(s);
    else s.destroy();
  });
  await new Promise<void>((resolve, reject) => {
    srv.once('error', reject);
    srv.listen(port, '127.0.0.1', () => resolve());
  });
  t.teardown(() => {
    for (const s of sockets) s.destroy();
    return new Promise<void>((resolve) => srv.close(() => resolve()));
  });
  return srv;
}

const portOf = (srv: Server) => (srv.address() as { port: number }).port;

/** Connects to a listener that writes `chunks` (one every 20 ms) and keeps the socket open. */
async function talker(t: Test, chunks: string[]): Promise<Socket> {
  const srv = await listener(t, 0, (s) => {
    for (const [i, c] of chunks.entries()) setTimeout(() => s.write(c), 20 * (i + 1));
  });
  const client = connect({ host: '127.0.0.1', port: portOf(srv) });
  t.teardown(() => client.destroy());
  await new Promise((resolve) => client.once('connect', resolve));
  return client;
}

t.test('pickPort hands out a port that can be bound', async (t) => {
  const port = await pickPort();
  t.ok(port > 0);
  const srv = await listener(t, port);
  t.equal(portOf(srv), port);
});

t.test('waitForListening: resolves once the port accepts, else names its deadline', async (t) => {
  const port = await pickPort();
  setTimeout(() => void listener(t, port), 100);
  await waitForListening(port, 5_000, 'late listener');
  t.pass('the late listener was seen');

  const nobody = await pickPort();
  const err = await waitForListening(nobody, 200, `nobody on ${nobody}`).catch((e: unknown) => e);
  t.ok(err instanceof DeadlineError, 'DeadlineError');
  t.equal((err as Error).message, `nobody on ${nobody} accepting connections: no answer within 200 ms`);
});

t.test('waitForLine: a line split across writes matches; the deadline is named', async (t) => {
  const client = await talker(t, ['starting\nAccepting HT', 'TP Socket connections at 1\n', 'more\n']);
  const line = await waitForLine(client, /Accepting (SSL bumped )?HTTP Socket connections/, {
    what: 'talker readiness',
    deadlineMs: 5_000,
  });
  t.equal(line, 'Accepting HTTP Socket connections at 1');

  const quiet = await talker(t, ['starting\n', 'still starting\n']);
  const err = await waitForLine(quiet, /ready/, { what: 'quiet talker readiness', deadlineMs: 300 }).catch(
    (e: unknown) => e,
  );
  t.ok(err instanceof DeadlineError, 'DeadlineError');
  t.equal((err as Error).message, 'quiet talker readiness: no answer within 300 ms');

  const aborted = await talker(t, ['starting\n']);
  const ac = new AbortController();
  setTimeout(() => ac.abort(new SetupError('it went away')), 50);
  const gone = await waitForLine(aborted, /ready/, {
    what: 'aborted',
    deadlineMs: 5_000,
    signal: ac.signal,
  }).catch((e: unknown) => e);
  t.equal((gone as Error).message, 'it went away', 'the abort reason, well before the deadline');
});

t.test('launchProcess: readiness, exit before readiness, and a stop that kills', async (t) => {
  const node = process.execPath;
  const ok = launchProcess({
    what: 'ready-child',
    cmd: node,
    args: [
      '-e',
      'console.error("booting"); setTimeout(() => console.error("READY now"), 50); setInterval(() => {}, 1000)',
    ],
    cleanupName: (pid) => `ready-child ${pid}`,
  });
  await ok.ready(/READY/, { awaiting: 'readiness', deadlineMs: 20_000, problem: () => 'none' });
  t.match(ok.output(), /booting\nREADY now/);
  await ok.stop();
  t.equal(ok.child.signalCode, 'SIGTERM', 'stopped with the default signal');

  const dies = launchProcess({
    what: 'dying-child',
    cmd: node,
    args: ['-e', 'console.error("FATAL: no way"); process.exit(3)'],
    cleanupName: (pid) => `dying-child ${pid}`,
  });
  const err = await dies
    .ready(/READY/, {
      awaiting: 'readiness',
      deadlineMs: 20_000,
      problem: () =>
        dies
          .output()
          .split('\n')
          .find((l) => l.startsWith('FATAL')) ?? 'no FATAL line',
    })
    .catch((e: unknown) => e);
  t.ok(err instanceof SetupError, 'SetupError');
  t.match((err as Error).message, /^dying-child exited \(code 3\) before it was ready: /);
  await dies.stop();

  const stubborn = launchProcess({
    what: 'stubborn-child',
    cmd: node,
    args: ['-e', 'process.on("SIGINT", () => {}); console.error("READY"); setInterval(() => {}, 1000)'],
    cleanupName: (pid) => `stubborn-child ${pid}`,
    stopSignal: 'SIGINT',
    stopDeadlineMs: 300,
  });
  // READY comes after the SIGINT handler is installed
  await stubborn.ready(/READY/, { awaiting: 'readiness', deadlineMs: 10_000, problem: () => '' });
  const late = await stubborn
    .ready(/NEVER/, { awaiting: 'a line it never prints', deadlineMs: 300, problem: () => '' })
    .catch((e: unknown) => e);
  t.equal((late as Error).message, 'stubborn-child a line it never prints: no answer within 300 ms');
  const t0 = performance.now();
  await stubborn.stop();
  t.equal(stubborn.child.signalCode, 'SIGKILL', 'killed after ignoring SIGINT');
  t.ok(performance.now() - t0 >= 250, 'after the stop deadline');
});
