/**
 * The proxy adapter toolkit over real sockets and processes: the readiness waits name their
 * deadline, a launched process reports its exit and is killed when it ignores the stop signal,
 * and squid still starts when the port it was first given is taken by someone else (its bind
 * fails with "(98) Address already in use" and the start is retried on a new port).
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { DeadlineError, SetupError } from '../harness/errors.ts';
import { SquidProxy } from '../harness/proxies/squid/squid.ts';
import { pickPort, withPortRetry } from '../harness/proxies/toolkit/ports.ts';
import { launchProcess } from '../harness/proxies/toolkit/process.ts';
import { waitForLine, waitForListening } from '../harness/proxies/toolkit/ready.ts';
import { https443, testLab } from './helpers/fixtures.ts';
import { labNet } from './helpers/lab-net.ts';
import { containerEngineProblem, requireComponent, squidProblem } from './helpers/requirements.ts';
import { containersLabelled, squidChildrenOf } from './helpers/squid-fleet.ts';

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

t.test('withPortRetry: a taken port is retried, other failures are not', async (t) => {
  const taken = new SetupError('bind failed', { stderr: '(98) Address already in use' });
  const ports = [1001, 1002, 1003, 1004];
  const tried: number[] = [];
  const got = await withPortRetry({
    pick: async () => ports[tried.length] ?? 0,
    start: async (port, attempt) => {
      tried.push(port);
      if (attempt < 3) throw taken;
      return port;
    },
    portTaken: (e) => e === taken,
  });
  t.equal(got, 1003);
  t.same(tried, [1001, 1002, 1003]);

  const other = new Error('no');
  let calls = 0;
  const err = await withPortRetry({
    pick: async () => 2000,
    start: async () => {
      calls++;
      throw other;
    },
    portTaken: () => false,
  }).catch((e: unknown) => e);
  t.equal(err, other, 'thrown as it is');
  t.equal(calls, 1, 'no retry');
});

/** Ports from `pickPort`, except that the first `taken` of them are held by a listener of ours. */
function takenFirst(t: Test, taken: number): { pick: () => Promise<number>; picked: number[] } {
  const picked: number[] = [];
  const pick = async () => {
    const port = picked.length < taken ? portOf(await listener(t)) : await pickPort();
    picked.push(port);
    return port;
  };
  return { pick, picked };
}

const squid = requireComponent(t, 'squid', squidProblem());

t.test('squid starts on a new port when its first one is taken', { ...squid, timeout: 60_000 }, async (t) => {
  const { lab, runDir } = await testLab(t, await labNet(t), [https443('retry.test')]);
  const { pick, picked } = takenFirst(t, 1);
  const proxy = new SquidProxy({ flavour: 'default', runtime: 'process', pickPort: pick });
  const started = await proxy.start({ lab, runDir });
  t.teardown(() => started.stop());
  t.equal(picked.length, 2, 'two ports picked');
  t.not(started.port, picked[0], 'not on the taken port');
  t.equal(started.port, picked[1]);
  await waitForListening(started.port, 5_000, 'squid-default');
  const failed = readdirSync(runDir.path)
    .filter((d) => d.startsWith('squid-default-'))
    .map((d) => join(runDir.path, d, 'logs', 'cache.log'))
    .filter(existsSync)
    .map((f) => readFileSync(f, 'utf8'))
    .find((text) => text.includes('FATAL'));
  t.match(
    failed,
    `127.0.0.1:${picked[0]}: (98) Address already in use`,
    'the first attempt hit the taken port',
  );
  t.match(failed, 'FATAL: Unable to open HTTP Socket');
  await started.stop();
  t.same(squidChildrenOf(process.pid), [], 'no squid child left');
});

t.test('squid gives up after three taken ports and names them', { ...squid, timeout: 60_000 }, async (t) => {
  const { lab, runDir } = await testLab(t, await labNet(t), [https443('retry.test')]);
  const { pick, picked } = takenFirst(t, 3);
  const proxy = new SquidProxy({ flavour: 'default', runtime: 'process', pickPort: pick });
  const err = await proxy.start({ lab, runDir }).catch((e: unknown) => e);
  t.ok(err instanceof SetupError, 'SetupError');
  const e = err as SetupError;
  t.equal(
    e.message,
    `squid-default (process) exited (code 1) before it was ready: FATAL: Unable to open HTTP Socket ` +
      `(address in use on each of 3 attempts: ports ${picked.join(', ')})`,
  );
  t.same(e.evidence.ports, picked);
  t.match(String(e.evidence.stderr), 'Address already in use');
  t.same(squidChildrenOf(process.pid), [], 'no squid child left');
});

const engine = requireComponent(t, 'a container engine', await containerEngineProblem());

t.test(
  'squid in a container starts on a new port when its first one is taken',
  { ...engine, timeout: 600_000 },
  async (t) => {
    const { lab, runDir } = await testLab(t, await labNet(t), [https443('retry.test')]);
    const { pick, picked } = takenFirst(t, 1);
    const proxy = new SquidProxy({ flavour: 'default', runtime: 'container', pickPort: pick });
    const started = await proxy.start({ lab, runDir });
    t.teardown(() => started.stop());
    t.equal(started.runtime, 'container');
    t.equal(picked.length, 2, 'two ports picked');
    t.equal(started.port, picked[1], 'on the second port');
    await started.stop();
    t.same(containersLabelled({ proxycheck: '1', 'proxycheck.pid': String(process.pid) }), [], 'none left');
  },
);
