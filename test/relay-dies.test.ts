/**
 * A proxy that dies (RelayFront diesAfterSeconds), over real sockets on 127.0.0.1: a real
 * proxy-chain server behind the relay, a real CONNECT tunnel to a TCP echo server. The tunnel
 * works before; at ~N s after start it is reset (the agent reads ECONNRESET), a new connect is
 * refused (ECONNREFUSED), and the engine behind keeps running until stop().
 */
import { connect, createServer, type Socket } from 'node:net';
import { Server } from 'proxy-chain';
import t, { type Test } from 'tap';
import { openTunnel } from '../harness/agent/tunnel.ts';
import { RunDir } from '../harness/lab/rundir.ts';
import type { Flow } from '../harness/proxies/relay.ts';
import { RelayFront } from '../harness/proxies/relay-front.ts';
import type { ProxyUnderTest, StartedProxy } from '../harness/proxies/types.ts';

const DIES_S = 2;
/** How late the reset may be seen after N s (timer, reset and the event loop). */
const LATE_MS = 400;

/** A TCP echo server on 127.0.0.1, closed (with its sockets) at teardown. */
async function echoServer(t: Test): Promise<number> {
  const sockets = new Set<Socket>();
  const srv = createServer((s) => {
    sockets.add(s);
    s.on('error', () => {});
    s.once('close', () => sockets.delete(s));
    s.pipe(s);
  });
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  t.teardown(() => {
    for (const s of sockets) s.destroy();
    return new Promise<void>((resolve) => srv.close(() => resolve()));
  });
  return (srv.address() as { port: number }).port;
}

/** proxy-chain with its defaults (any CONNECT allowed), in this process; `started` is its own address. */
class PlainChain implements ProxyUnderTest {
  readonly id = 'chain-dies';
  started?: StartedProxy;
  describe(): string {
    return 'proxy-chain, open CONNECT';
  }
  async start(): Promise<StartedProxy> {
    const server = new Server({ port: 0, host: '127.0.0.1' });
    server.on('requestFailed', () => {});
    await server.listen();
    this.started = {
      id: this.id,
      kind: 'plain',
      runtime: 'in-process',
      version: 'proxy-chain',
      url: `http://127.0.0.1:${server.port}`,
      host: '127.0.0.1',
      port: server.port,
      startMs: 0,
      stop: () => server.close(true),
    };
    return this.started;
  }
}

/** What a connect to 127.0.0.1:port did: `connected` or its error code. */
function connectOutcome(port: number): Promise<string> {
  return new Promise((resolve) => {
    const s = connect({ host: '127.0.0.1', port });
    s.once('connect', () => {
      s.destroy();
      resolve('connected');
    });
    s.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
  });
}

/** One echo round trip on a tunnel (5 s deadline). */
function echoes(s: Socket, text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let got = '';
    const timer = setTimeout(() => done(new Error(`echo of "${text}": not back within 5000 ms`)), 5_000);
    const onData = (d: Buffer) => {
      got += d.toString();
      if (got.length >= text.length) done();
    };
    const done = (err?: Error) => {
      clearTimeout(timer);
      s.off('data', onData);
      if (err) reject(err);
      else resolve(got);
    };
    s.on('data', onData).resume(); // openTunnel hands the socket over paused
    s.write(text);
  });
}

t.test('diesAfterSeconds: positive numbers only; describe() says it', async (t) => {
  const inner = new PlainChain();
  t.throws(() => new RelayFront(inner, { diesAfterSeconds: 0 }), {
    message: 'chain-dies: diesAfterSeconds must be a positive number of seconds, not 0',
  });
  t.throws(() => new RelayFront(inner, { diesAfterSeconds: Number.NaN }), /positive number/);
  t.equal(
    new RelayFront(inner, { diesAfterSeconds: 3 }).describe(),
    'proxy-chain, open CONNECT, behind a relay: the proxy dies 3 s after start (connections reset, then refused)',
  );
});

t.test(`a proxy that dies after ${DIES_S} s: tunnel reset, then refused`, async (t) => {
  const runDir = new RunDir('proxycheck-test-');
  t.teardown(() => runDir.remove());
  const echoPort = await echoServer(t);
  const inner = new PlainChain();
  const flows: Flow[] = [];
  let diedAt: number | undefined;
  const front = new RelayFront(inner, {
    diesAfterSeconds: DIES_S,
    onDeath: (atMs) => {
      diedAt = atMs;
    },
    onFlow: (f) => flows.push(f),
  });
  const t0 = performance.now();
  const proxy = await front.start({ runDir });
  const t1 = performance.now();
  t.teardown(() => proxy.stop());
  t.not(proxy.port, inner.started?.port, 'the proxy address is the relay');

  const tun = await openTunnel({ proxy, target: { host: '127.0.0.1', port: echoPort } });
  if (!tun.ok) throw new Error(`CONNECT through the relay: ${tun.answer?.statusLine ?? tun.error}`);
  const s = tun.socket;
  t.teardown(() => void s.destroy());
  t.equal(tun.answer.statusCode, 200, 'CONNECT answered 200 by proxy-chain');
  t.equal(await echoes(s, 'before'), 'before', 'the tunnel carries bytes before the death');

  const ended = await new Promise<{ how: string; at: number }>((resolve) => {
    const timer = setTimeout(
      () => resolve({ how: 'still open', at: performance.now() }),
      (DIES_S + 3) * 1000,
    );
    const done = (how: string) => {
      clearTimeout(timer);
      resolve({ how, at: performance.now() });
    };
    s.once('error', (err: NodeJS.ErrnoException) => done(err.code ?? err.message));
    s.once('end', () => done('end (FIN)'));
  });
  const afterStart = ended.at - t0;
  t.comment(
    `reset seen ${Math.round(afterStart)} ms after start() was called (${Math.round(ended.at - t1)} ms after it returned); ` +
      `onDeath at ${diedAt === undefined ? '-' : Math.round(diedAt - t0)} ms`,
  );
  t.equal(ended.how, 'ECONNRESET', 'the agent reads a reset, as from a crashed proxy');
  t.ok(
    afterStart >= DIES_S * 1000 && ended.at - t1 <= DIES_S * 1000 + LATE_MS,
    `reset between ${DIES_S} s after start() began and ${DIES_S * 1000 + LATE_MS} ms after it returned`,
  );
  t.ok(diedAt !== undefined && diedAt >= t1 && diedAt <= ended.at + 50, 'onDeath names the moment');

  t.equal(await connectOutcome(proxy.port), 'ECONNREFUSED', 'a new connect is refused');
  const direct = await openTunnel({
    proxy: inner.started as StartedProxy,
    target: { host: '127.0.0.1', port: echoPort },
  });
  t.ok(direct.ok, 'the engine behind the relay still runs');
  if (direct.ok) {
    t.equal(await echoes(direct.socket, 'after'), 'after');
    direct.socket.destroy();
  }
  t.match(flows, [{ method: 'CONNECT', status: 200, ended: `proxy died ${DIES_S} s after start` }]);
  await proxy.stop();
  t.equal(await connectOutcome(inner.started?.port as number), 'ECONNREFUSED', 'stop() stops the engine');
});
