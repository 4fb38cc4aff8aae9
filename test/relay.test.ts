/**
 * The relay in front of a proxy, over real sockets on 127.0.0.1: bytes pass unchanged, each path
 * fault does what it says (latency, bandwidth, split writes, reset after N bytes, silence, a
 * lifetime cap), and the flow log reads the first request and answer of each connection.
 */
import { connect, createServer, type Server, type Socket } from 'node:net';
import t, { type Test } from 'tap';
import { type Flow, type RelayOptions, type StartedRelay, startRelay } from '../harness/proxies/relay.ts';
import { pickPort } from '../harness/proxies/toolkit/ports.ts';

/** Waits for `cond` (polled every 10 ms) or fails naming `what` after `ms`. */
async function until(what: string, cond: () => boolean, ms = 5_000): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) throw new Error(`${what}: not seen within ${ms} ms`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A target on 127.0.0.1: every accepted socket is handed to `onSocket`; all closed at teardown. */
async function target(t: Test, onSocket: (s: Socket) => void): Promise<{ srv: Server; port: number }> {
  const sockets = new Set<Socket>();
  const srv = createServer((s) => {
    sockets.add(s);
    s.on('error', () => {});
    s.once('close', () => sockets.delete(s));
    onSocket(s);
  });
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  t.teardown(() => {
    for (const s of sockets) s.destroy();
    return new Promise<void>((resolve) => srv.close(() => resolve()));
  });
  return { srv, port: (srv.address() as { port: number }).port };
}

/** An echo target that also keeps what it received. */
async function echo(t: Test): Promise<{ port: number; received: () => Buffer }> {
  const got: Buffer[] = [];
  const { port } = await target(t, (s) => {
    s.on('data', (d: Buffer) => {
      got.push(d);
      s.write(d);
    });
  });
  return { port, received: () => Buffer.concat(got) };
}

const OK_200 = 'HTTP/1.1 200 Connection established\r\n\r\n';
const DENIED_407 =
  'HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm="t"\r\nContent-Length: 6\r\n\r\ndenied';

/** A fake proxy: CONNECT with Proxy-Authorization (or any CONNECT, when `open`) gets 200 and an echo; else 407. */
async function fakeProxy(t: Test, open: boolean): Promise<number> {
  const { port } = await target(t, (s) => {
    let buf = Buffer.alloc(0);
    let tunnel = false;
    s.on('data', (d: Buffer) => {
      if (tunnel) return void s.write(d);
      buf = Buffer.concat([buf, d]);
      for (let end = buf.indexOf('\r\n\r\n'); end >= 0 && !tunnel; end = buf.indexOf('\r\n\r\n')) {
        const head = buf.subarray(0, end).toString('latin1');
        buf = buf.subarray(end + 4);
        if (!head.startsWith('CONNECT ')) s.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
        else if (!open && !/\r\nproxy-authorization:/i.test(head)) s.write(DENIED_407);
        else {
          tunnel = true;
          s.write(OK_200);
          if (buf.length) s.write(buf);
        }
      }
    });
  });
  return port;
}

interface Started {
  relay: StartedRelay;
  flows: Flow[];
}

async function relay(t: Test, opts: Omit<RelayOptions, 'onFlow'>): Promise<Started> {
  const flows: Flow[] = [];
  const relay = await startRelay({ ...opts, onFlow: (f) => flows.push(f) });
  t.teardown(() => relay.stop());
  return { relay, flows };
}

interface Client {
  s: Socket;
  got: Buffer[];
  received: () => Buffer;
  ended: boolean;
  closed: boolean;
  error?: NodeJS.ErrnoException;
}

async function dial(t: Test, port: number): Promise<Client> {
  const s = connect({ host: '127.0.0.1', port });
  s.setNoDelay(true);
  const c: Client = { s, got: [], received: () => Buffer.concat(c.got), ended: false, closed: false };
  s.on('data', (d: Buffer) => c.got.push(d));
  s.on('end', () => {
    c.ended = true;
  });
  s.on('close', () => {
    c.closed = true;
  });
  s.on('error', (err) => {
    c.error = err;
  });
  t.teardown(() => void s.destroy());
  await new Promise((resolve, reject) => {
    s.once('connect', resolve);
    s.once('error', reject);
  });
  return c;
}

t.test(
  'no faults: bytes pass unchanged both ways and the flow reads the CONNECT and its answer',
  async (t) => {
    const { relay: r, flows } = await relay(t, {
      target: { host: '127.0.0.1', port: await fakeProxy(t, true) },
    });
    t.equal(r.host, '127.0.0.1');
    t.equal(r.url, `http://127.0.0.1:${r.port}`);
    const c = await dial(t, r.port);
    const head = 'CONNECT origin.test:443 HTTP/1.1\r\nHost: origin.test:443\r\n\r\n';
    const payload = Buffer.from(Array.from({ length: 5000 }, (_, i) => i % 251));
    c.s.write(head);
    await until('the 200 answer', () => c.received().length >= OK_200.length);
    t.equal(c.received().toString('latin1'), OK_200);
    c.s.write(payload);
    await until('the echo', () => c.received().length >= OK_200.length + payload.length);
    t.same(c.received().subarray(OK_200.length), payload, 'the echo is byte for byte what was sent');
    const localPort = c.s.localPort;
    c.s.end();
    await until('the flow', () => flows.length === 1);
    const [f] = flows;
    t.equal(f?.client, `127.0.0.1:${localPort}`);
    t.ok(f && Date.now() - Date.parse(f.startedAt) < 10_000, `startedAt ${f?.startedAt}`);
    t.match(f, {
      method: 'CONNECT',
      target: 'origin.test:443',
      status: 200,
      statusText: 'Connection established',
      requests: 1,
      bytesUp: head.length + payload.length,
      bytesDown: OK_200.length + payload.length,
      ended: 'client closed',
    });
    t.ok(typeof f?.durationMs === 'number' && f.durationMs >= 0);
  },
);

t.test('flow: a CONNECT refused with 407 and retried with credentials records the last answer', async (t) => {
  const { relay: r, flows } = await relay(t, {
    target: { host: '127.0.0.1', port: await fakeProxy(t, false) },
  });
  const c = await dial(t, r.port);
  c.s.write('CONNECT first.test:443 HTTP/1.1\r\n\r\n');
  await until('the 407', () => c.received().toString().endsWith('denied'));
  c.s.write('CONNECT first.test:443 HTTP/1.1\r\nProxy-Authorization: Basic dTpw\r\n\r\n');
  await until('the 200', () => c.received().toString().endsWith(OK_200));
  c.s.write('GET / HTTP/1.1\r\n\r\n'); // tunnel bytes that look like a request: not counted
  await until('the echo', () => c.received().toString().endsWith('GET / HTTP/1.1\r\n\r\n'));
  c.s.end();
  await until('the flow', () => flows.length === 1);
  t.match(flows[0], { method: 'CONNECT', target: 'first.test:443', status: 200, requests: 2 });

  const c2 = await dial(t, r.port);
  c2.s.write('CONNECT other.test:443 HTTP/1.1\r\n\r\n');
  await until('the 407', () => c2.received().toString().endsWith('denied'));
  c2.s.end();
  await until('the second flow', () => flows.length === 2);
  t.match(flows[1], {
    method: 'CONNECT',
    target: 'other.test:443',
    status: 407,
    statusText: 'Proxy Authentication Required',
    requests: 1,
    ended: 'client closed',
  });
});

t.test('flow: forwarded requests on a kept-alive connection are counted', async (t) => {
  const { relay: r, flows } = await relay(t, {
    target: { host: '127.0.0.1', port: await fakeProxy(t, true) },
  });
  const c = await dial(t, r.port);
  c.s.write('GET http://origin.test/a HTTP/1.1\r\nHost: origin.test\r\n\r\n');
  await until('the first answer', () => c.received().toString().endsWith('ok'));
  c.s.write('POST http://origin.test/b HTTP/1.1\r\nHost: origin.test\r\nContent-Length: 4\r\n\r\nbody');
  await until('the second answer', () => c.received().toString().split('ok').length === 3);
  c.s.end();
  await until('the flow', () => flows.length === 1);
  t.match(flows[0], {
    method: 'GET',
    target: 'http://origin.test/a',
    status: 200,
    statusText: 'OK',
    requests: 2,
  });
});

t.test('latency: 200 ms each way delays an echo round trip by 400 ms and keeps the order', async (t) => {
  const { port } = await echo(t);
  const { relay: r } = await relay(t, { target: { host: '127.0.0.1', port }, faults: { latencyMs: 200 } });
  const c = await dial(t, r.port);
  const t0 = performance.now();
  c.s.write('ping');
  await until('the echo', () => c.received().toString() === 'ping');
  const rtt = performance.now() - t0;
  t.ok(rtt >= 380 && rtt < 2_000, `round trip ${Math.round(rtt)} ms`);

  c.got.length = 0;
  const sent: string[] = [];
  for (let i = 0; i < 50; i++) {
    sent.push(`<${i}>`);
    c.s.write(`<${i}>`);
    if (i % 10 === 0) await pause(5);
  }
  await until('50 echoed chunks', () => c.received().length === sent.join('').length);
  t.equal(c.received().toString(), sent.join(''), 'order kept across 50 chunks');
});

t.test('bandwidth: 60 KB at 20000 B/s takes at least 2.5 s', async (t) => {
  const { port, received } = await echo(t);
  const { relay: r, flows } = await relay(t, {
    target: { host: '127.0.0.1', port },
    faults: { bandwidthBytesPerSecond: 20_000 },
  });
  const c = await dial(t, r.port);
  const data = Buffer.alloc(60_000, 7);
  const t0 = performance.now();
  c.s.write(data);
  await until('60 KB at the target', () => received().length === data.length, 10_000);
  const up = performance.now() - t0;
  await until('60 KB back', () => c.received().length === data.length, 10_000);
  const both = performance.now() - t0;
  t.ok(up >= 2_500 && up < 6_000, `upload took ${Math.round(up)} ms`);
  t.ok(both >= up && both < 7_000, `round trip took ${Math.round(both)} ms (directions paced in parallel)`);
  c.s.end();
  await until('the flow', () => flows.length === 1);
  t.match(flows[0], { bytesUp: 60_000, bytesDown: 60_000 });
});

t.test('splitWritesBytes 10: a 100-byte write arrives in pieces of at most 10 bytes', async (t) => {
  const { port, received } = await echo(t);
  const { relay: r } = await relay(t, {
    target: { host: '127.0.0.1', port },
    faults: { splitWritesBytes: 10 },
  });
  const c = await dial(t, r.port);
  const data = Buffer.from('x'.repeat(100));
  c.s.write(data);
  await until('100 bytes back', () => c.received().length === 100);
  t.same(received(), data);
  // The relay writes 10-byte pieces 1 ms apart; a reader that is late (a loaded machine) may find
  // two pieces waiting and read them as one, but never a piece cut or merged into an odd size.
  const sizes = c.got.map((b) => b.length);
  t.ok(sizes.length >= 5, `${sizes.length} data events: ${sizes.join(' ')}`);
  t.ok(
    sizes.every((n) => n % 10 === 0),
    `each read is whole 10-byte pieces: ${sizes.join(' ')}`,
  );
  t.ok(
    sizes.filter((n) => n === 10).length >= sizes.length / 2,
    `most reads are one piece: ${sizes.join(' ')}`,
  );
});

t.test('resetAfterBytes 50: 50 bytes pass, counted both ways, then both sides are reset', async (t) => {
  const { port, received } = await echo(t);
  const { relay: r, flows } = await relay(t, {
    target: { host: '127.0.0.1', port },
    faults: { resetAfterBytes: 50 },
  });
  const c = await dial(t, r.port);
  c.s.write('a'.repeat(30));
  await until('the reset', () => c.error !== undefined);
  t.equal(c.error?.code, 'ECONNRESET');
  t.equal(received().length, 30, 'the target got the 30 bytes sent');
  t.equal(c.received().length, 20, 'the client got 20 of the 30 echoed: 50 in all');
  await until('the flow', () => flows.length === 1);
  t.match(flows[0], { bytesUp: 30, bytesDown: 20, ended: 'fault: reset after 50 bytes' });
});

t.test('silenceAfterSeconds 0.5: bytes pass before, nothing after, the socket stays open', async (t) => {
  const { port, received } = await echo(t);
  const { relay: r, flows } = await relay(t, {
    target: { host: '127.0.0.1', port },
    faults: { silenceAfterSeconds: 0.5 },
  });
  const t0 = performance.now();
  const c = await dial(t, r.port);
  c.s.write('before');
  await until('the echo before the silence', () => c.received().toString() === 'before');
  await pause(600 - (performance.now() - t0));
  c.s.write('after');
  await pause(1_000);
  t.equal(c.received().toString(), 'before', 'nothing came back after 0.5 s');
  t.equal(received().toString(), 'before', 'nothing reached the target after 0.5 s');
  t.notOk(c.ended || c.closed || c.error, 'the client socket is still open');
  c.s.end();
  await until('the flow', () => flows.length === 1);
  t.match(flows[0], { bytesUp: 6, bytesDown: 6, ended: 'client closed (path silent after 0.5 s)' });
});

t.test('lifetimeSeconds 0.5: both sides are closed 0.5 s after the client connected', async (t) => {
  const { port } = await echo(t);
  const { relay: r, flows } = await relay(t, { target: { host: '127.0.0.1', port }, lifetimeSeconds: 0.5 });
  const t0 = performance.now();
  const c = await dial(t, r.port);
  c.s.write('hi');
  await until('the end', () => c.ended, 3_000);
  const after = performance.now() - t0;
  t.ok(after >= 450 && after < 1_500, `'end' after ${Math.round(after)} ms`);
  t.equal(c.received().toString(), 'hi');
  t.notOk(c.error, 'a FIN, not a reset');
  await until('the flow', () => flows.length === 1);
  t.match(flows[0], { ended: 'lifetime: closed after 0.5 s' });
});

t.test('a reset from the proxy is passed on to the client, after the bytes before it', async (t) => {
  const { port } = await target(t, (s) => {
    s.once('data', () => s.write('HTTP/1.1 200 OK\r\n\r\n', () => setTimeout(() => s.resetAndDestroy(), 50)));
  });
  const { relay: r, flows } = await relay(t, {
    target: { host: '127.0.0.1', port },
    faults: { latencyMs: 100 },
  });
  const c = await dial(t, r.port);
  c.s.write('CONNECT origin.test:443 HTTP/1.1\r\n\r\n');
  await until('the reset', () => c.error !== undefined);
  t.equal(c.error?.code, 'ECONNRESET');
  t.equal(c.received().toString(), 'HTTP/1.1 200 OK\r\n\r\n');
  await until('the flow', () => flows.length === 1);
  t.match(flows[0], { status: 200, statusText: 'OK', bytesDown: 19, ended: 'proxy reset' });
});

t.test('an unreachable target: the client is closed and the flow says why', async (t) => {
  const { relay: r, flows } = await relay(t, { target: { host: '127.0.0.1', port: await pickPort() } });
  const c = await dial(t, r.port);
  await until('the close', () => c.closed);
  t.ok(c.ended, 'closed with a FIN');
  await until('the flow', () => flows.length === 1);
  t.match(flows[0]?.ended, /^proxy unreachable: connect ECONNREFUSED 127\.0\.0\.1:\d+$/);
});

t.test('stop(): an open connection ends as relay stopped, and nothing is left running', async (t) => {
  const { port } = await echo(t);
  const count = () => {
    const kinds = process.getActiveResourcesInfo();
    return ['TCPSocketWrap', 'TCPServerWrap', 'Timeout'].map(
      (k) => `${k} ${kinds.filter((x) => x === k).length}`,
    );
  };
  // Only the echo server is left once the earlier tests' handles are released (a closed server's
  // handle goes in the loop's close phase, after its 'close' event).
  const before = ['TCPSocketWrap 0', 'TCPServerWrap 1', 'Timeout 0'];
  await until('the earlier handles released', () => count().join() === before.join(), 2_000);
  const flows: Flow[] = [];
  const r = await startRelay({
    target: { host: '127.0.0.1', port },
    faults: { latencyMs: 50, silenceAfterSeconds: 60 },
    lifetimeSeconds: 60,
    onFlow: (f) => flows.push(f),
  });
  const c = await dial(t, r.port);
  c.s.write('x');
  await until('the echo', () => c.received().toString() === 'x');
  c.s.write('y'); // still queued in the relay when it stops
  await r.stop();
  t.equal(flows.length, 1, 'the flow was recorded before stop() resolved');
  t.match(flows[0], { ended: 'relay stopped', bytesUp: 1, bytesDown: 1 });
  await until('the client closed', () => c.closed);
  const refused = await dial(t, r.port).then(
    () => 'connected',
    (err: NodeJS.ErrnoException) => err.code,
  );
  t.equal(refused, 'ECONNREFUSED', 'the server is closed');
  await until('the handles released', () => count().join() === before.join(), 2_000).catch(() => {});
  t.same(count(), before, 'no socket, server or timer left');
  await r.stop();
  t.pass('a second stop() resolves too');
});
