/**
 * A TCP relay in front of a forward proxy (proxy-chain in this process, or squid): each client
 * connection gets its own connection to the proxy, the path faults are done to the bytes both ways
 * (one ordered queue per direction), a FIN or RST from one side is passed on to the other, and one
 * Flow per client connection goes to `onFlow` once both sockets have closed.
 *  - latencyMs: every chunk (and a FIN or RST passed on) leaves latencyMs after it arrived.
 *  - bandwidthBytesPerSecond: per direction, released in pieces of at most 1/20 s worth, each
 *    scheduled after the previous one's share of the cap.
 *  - splitWritesBytes: pieces of at most N bytes, one write each, 1 ms apart (separate segments).
 *  - resetAfterBytes: exactly N bytes are delivered (both ways counted), then both sides are reset.
 *  - silenceAfterSeconds: from N s after accept nothing is forwarded (queued and new bytes are
 *    dropped), both sockets stay open until a side closes (the other is then destroyed).
 *  - lifetimeSeconds: N s after accept both sides are ended (FIN), destroyed 2 s later if open.
 *
 * `die()` plays a proxy crash: every connection is reset both ways (RST, no FIN; queued bytes are
 * dropped) and the listener closes, so a later connect is refused.
 */
import { type AddressInfo, connect, createServer, type Socket } from 'node:net';
import { errorMessage, withDeadline } from '../errors.ts';
import type { PathFaults } from './definition.ts';
import { type Dir, Sniffer } from './relay-flow.ts';

export interface Flow {
  /** client address:port */
  client: string;
  /** ISO time the client connected */
  startedAt: string;
  /** First request head of the connection: `CONNECT host:port`, or the method and URL of a forwarded request. */
  method?: string;
  target?: string;
  /**
   * The proxy's first answer; on a connection opened with CONNECT, its last answer before the
   * tunnel opened (a 407 retried with credentials on the same connection records the 200).
   */
  status?: number;
  statusText?: string;
  /** Request heads the client sent before any tunnel opened (a CONNECT retried after a 407 counts 2). */
  requests: number;
  /** Bytes delivered client -> proxy, whole connection (not read: they differ under faults). */
  bytesUp: number;
  /** Bytes delivered proxy -> client, whole connection. */
  bytesDown: number;
  durationMs: number;
  /**
   * `client closed` | `proxy closed` (whose FIN came first) | `client reset` | `proxy reset` |
   * `client error: …` | `proxy error: …` | `proxy unreachable: …` (the client is then closed) |
   * `fault: reset after N bytes` | `lifetime: closed after N s` | `relay stopped` |
   * `proxy died` (or the reason given to die()) |
   * `client closed (path silent after N s)` (or proxy, reset, error).
   */
  ended: string;
}

export interface RelayOptions {
  target: { host: string; port: number };
  faults?: PathFaults;
  /** Close (FIN) both sides this many seconds after the client connected (a proxy's tunnel lifetime cap). */
  lifetimeSeconds?: number;
  onFlow?: (flow: Flow) => void;
  /** Deadline for connecting to the target (default 10 s), named in `ended`; the client is closed. */
  connectTimeoutMs?: number;
  /** Where to listen (default 127.0.0.1); port 0 unless `port` is given. */
  listen?: { host?: string; port?: number };
}

export interface StartedRelay {
  host: string;
  port: number;
  url: string;
  /** Destroys every connection (flows end `relay stopped`) and closes the server; resolves when closed. */
  stop(): Promise<void>;
  /**
   * The proxy crashes: every connection is reset both ways (flows end `reason`, default
   * `proxy died`) and the listener closes at once, so later connects are refused (ECONNREFUSED);
   * resolves when all are closed. Idempotent; stop() still works after it.
   */
  die(reason?: string): Promise<void>;
}

/** Bytes queued in one direction before its source is paused (resumed below half). */
const QUEUE_HIGH = 1024 * 1024;
const CLOSE_GRACE_MS = 2_000;
const RESET_DELAY_MS = 20;
const STOP_DEADLINE_MS = 5_000;

type Item = { due: number; data?: Buffer; eof?: 'end' | 'reset' };

/** One direction of one connection: a queue released in order, with the faults applied. */
class Pipe {
  private queue: Item[] = [];
  private queued = 0;
  private running = false;
  /** Bandwidth: when the next piece may leave. */
  private nextFree = 0;
  dead = false;

  constructor(
    private readonly c: Conn,
    private readonly src: Socket,
    private readonly dst: Socket,
    private readonly dir: Dir,
  ) {}

  push(item: Item): void {
    if (this.dead) return;
    this.queue.push(item);
    this.queued += item.data?.length ?? 0;
    if (this.queued > QUEUE_HIGH) this.src.pause();
    if (this.running) return;
    this.running = true;
    this.run().catch((err: unknown) => this.c.shut(`relay error: ${errorMessage(err)}`, 'destroy'));
  }

  kill(): void {
    this.dead = true;
    this.queue = [];
  }

  private async run(): Promise<void> {
    for (let item = this.queue.shift(); item && !this.dead; item = this.queue.shift()) {
      this.queued -= item.data?.length ?? 0;
      if (this.queued <= QUEUE_HIGH / 2 && this.src.isPaused()) this.src.resume();
      await this.c.sleep(item.due - performance.now());
      if (this.dst.connecting) await settled(this.dst, 'connect'); // bytes count once they can leave
      if (this.dead || this.dst.destroyed) break;
      if (item.data) await this.deliver(item.data);
      else if (item.eof === 'end') this.dst.end();
      else this.dst.resetAndDestroy();
    }
    this.running = false;
  }

  private async deliver(data: Buffer): Promise<void> {
    const { splitWritesBytes: split, bandwidthBytesPerSecond: rate } = this.c.faults;
    const size = Math.max(
      1,
      Math.min(data.length, split || data.length, rate ? Math.ceil(rate / 20) : data.length),
    );
    for (let off = 0; off < data.length; off += size) {
      if (off > 0 && split) await this.c.sleep(1);
      const piece = data.subarray(off, off + size);
      if (rate) {
        const now = performance.now();
        const start = Math.max(now, this.nextFree);
        this.nextFree = start + (piece.length * 1000) / rate;
        await this.c.sleep(start - now);
      }
      if (this.dead || this.dst.destroyed || this.dst.writableEnded) return;
      const left = this.c.budget();
      this.c.count(this.dir, Math.min(left, piece.length));
      if (piece.length >= left) {
        this.c.resetFault(this.dst, piece.subarray(0, left));
        return;
      }
      if (!this.dst.write(piece)) await settled(this.dst, 'drain');
    }
  }
}

/** Resolves on `event` ('drain', 'connect') or 'close', whichever comes first. */
function settled(s: Socket, event: string): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      s.off(event, done).off('close', done);
      resolve();
    };
    s.on(event, done).on('close', done);
  });
}

/** One client connection, its connection to the proxy, both directions and its flow. */
class Conn {
  readonly faults: PathFaults;
  readonly done: Promise<void>;
  private readonly flow: Flow;
  private readonly upstream: Socket;
  private readonly up: Pipe;
  private readonly down: Pipe;
  private readonly sniff: Sniffer;
  private readonly t0 = performance.now();
  private readonly timers = new Set<NodeJS.Timeout>();
  private reason?: string;
  private hard = false; // the reason is a reset, fault, deadline or stop: they replace a FIN
  private halted = false;
  private silent = false;
  private connected = false;
  private delivered = 0;
  private open = 2;
  private resolveDone = () => {};

  constructor(
    private readonly client: Socket,
    private readonly opts: RelayOptions,
    private readonly onClosed: () => void,
  ) {
    this.faults = opts.faults ?? {};
    this.done = new Promise((resolve) => {
      this.resolveDone = resolve;
    });
    const zero = { requests: 0, bytesUp: 0, bytesDown: 0, durationMs: 0, ended: '' };
    const startedAt = new Date().toISOString();
    this.flow = { client: `${client.remoteAddress ?? '?'}:${client.remotePort ?? '?'}`, startedAt, ...zero };
    this.sniff = new Sniffer(this.flow);
    this.upstream = connect({ ...opts.target, allowHalfOpen: true });
    this.up = new Pipe(this, client, this.upstream, 'up');
    this.down = new Pipe(this, this.upstream, client, 'down');
    this.wire(client, 'client', this.up, this.down);
    this.wire(this.upstream, 'proxy', this.down, this.up);
    const ms = opts.connectTimeoutMs ?? 10_000;
    const connecting = this.timer(ms, () =>
      this.shut(`proxy unreachable: no connection within ${ms} ms`, 'end'),
    );
    this.upstream.once('connect', () => {
      this.connected = true;
      clearTimeout(connecting);
      this.timers.delete(connecting);
    });
    const { silenceAfterSeconds: silence } = this.faults;
    if (silence !== undefined)
      this.timer(silence * 1000, () => {
        this.silent = true;
        this.quiet();
        client.resume();
        this.upstream.resume();
      });
    const life = opts.lifetimeSeconds;
    if (life !== undefined)
      this.timer(life * 1000, () => this.shut(`lifetime: closed after ${life} s`, 'end'));
  }

  private wire(s: Socket, side: 'client' | 'proxy', from: Pipe, to: Pipe): void {
    s.setNoDelay(true);
    const due = () => performance.now() + (this.faults.latencyMs ?? 0);
    const silenced = (what: string) =>
      this.shut(`${what} (path silent after ${this.faults.silenceAfterSeconds} s)`, 'destroy');
    s.on('data', (chunk: Buffer) => {
      if (this.silent || from.dead) return;
      this.sniff.feed(side === 'client' ? 'up' : 'down', chunk);
      from.push({ due: due(), data: chunk });
    });
    s.on('end', () => {
      if (this.halted) return;
      if (this.silent) return silenced(`${side} closed`);
      this.note(`${side} closed`, false);
      from.push({ due: due(), eof: 'end' });
    });
    s.on('error', (err: NodeJS.ErrnoException) => {
      if (this.halted) return;
      if (!this.connected && side === 'proxy')
        return this.shut(`proxy unreachable: ${errorMessage(err)}`, 'end');
      const what = err.code === 'ECONNRESET' ? `${side} reset` : `${side} error: ${errorMessage(err)}`;
      if (this.silent) return silenced(what);
      this.note(what, true);
      to.kill();
      from.push({ due: due(), eof: 'reset' });
    });
    s.on('close', () => {
      if (--this.open === 0) this.finish();
    });
  }

  private quiet(): void {
    this.up.kill();
    this.down.kill();
  }

  private note(reason: string, hard: boolean): void {
    if (this.reason !== undefined && (this.hard || !hard)) return;
    this.reason = reason;
    this.hard = hard;
  }

  private timer(ms: number, fn: () => void): NodeJS.Timeout {
    const t = setTimeout(() => {
      this.timers.delete(t);
      fn();
    }, ms);
    this.timers.add(t);
    return t;
  }

  /** Resolves after `ms`; never once the connection has finished (its timers are cleared). */
  sleep(ms: number): Promise<void> {
    return ms <= 0 ? Promise.resolve() : new Promise((resolve) => this.timer(ms, resolve));
  }

  /** Bytes left before the reset fault. */
  budget(): number {
    return (this.faults.resetAfterBytes ?? Number.POSITIVE_INFINITY) - this.delivered;
  }

  count(dir: Dir, n: number): void {
    this.delivered += n;
    if (dir === 'up') this.flow.bytesUp += n;
    else this.flow.bytesDown += n;
  }

  /**
   * The reset fault: `last` (the bytes up to the budget) is written, nothing more is forwarded,
   * and both sides are reset RESET_DELAY_MS later (a reset arriving together with unread bytes
   * reads as a plain close to libuv clients: 'end', not ECONNRESET).
   */
  resetFault(dst: Socket, last: Buffer): void {
    this.note(`fault: reset after ${this.faults.resetAfterBytes} bytes`, true);
    this.quiet();
    if (last.length) dst.write(last);
    this.timer(RESET_DELAY_MS, () => this.shut('', 'reset'));
  }

  /** Ends both sides for `reason`: FIN (destroyed after a grace), RST, or destroy. */
  shut(reason: string, how: 'end' | 'reset' | 'destroy'): void {
    const sockets = [this.client, this.upstream];
    // Already closing (a FIN and its grace): a `destroy` (relay stop) or `reset` (the proxy dying)
    // still ends it now.
    if (this.halted && how !== 'end')
      for (const s of sockets) {
        if (how === 'reset' && !s.destroyed && !s.connecting) s.resetAndDestroy();
        else s.destroy();
      }
    if (this.halted) return;
    this.halted = true;
    this.note(reason, true);
    this.quiet();
    for (const s of sockets) {
      if (how === 'destroy' || (s === this.upstream && !this.connected)) s.destroy();
      else if (s.destroyed) continue;
      else if (how === 'reset') s.resetAndDestroy();
      else s.end().resume();
    }
    if (how === 'end') this.timer(CLOSE_GRACE_MS, () => this.shut('', 'destroy'));
  }

  private finish(): void {
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    this.flow.durationMs = Math.round(performance.now() - this.t0);
    this.flow.ended = this.reason ?? 'closed';
    this.onClosed();
    this.resolveDone();
    this.opts.onFlow?.(this.flow);
  }
}

/** Starts a relay on 127.0.0.1 (port 0, or `opts.listen`) in front of `opts.target`. */
export async function startRelay(opts: RelayOptions): Promise<StartedRelay> {
  const conns = new Set<Conn>();
  const server = createServer({ allowHalfOpen: true }, (client) => {
    const conn = new Conn(client, opts, () => conns.delete(conn));
    conns.add(conn);
  });
  // A listen error rejects; later ones (an accept failing with EMFILE) lose that one client only.
  const host = opts.listen?.host ?? '127.0.0.1';
  await new Promise<void>((resolve, reject) =>
    server.on('error', reject).listen(opts.listen?.port ?? 0, host, resolve),
  );
  const port = (server.address() as AddressInfo).port;
  // The listener stops at once (close() drops the listening socket); `closed` waits for the rest.
  let closed: Promise<void> | undefined;
  const close = () => (closed ??= new Promise<void>((resolve) => server.close(() => resolve())));
  const end = async (reason: string, how: 'reset' | 'destroy') => {
    const done = close();
    const open = [...conns];
    for (const c of open) c.shut(reason, how);
    await Promise.all([done, ...open.map((c) => c.done)]);
  };
  let stopping: Promise<void> | undefined;
  let dying: Promise<void> | undefined;
  const stop = () =>
    withDeadline(`relay on port ${port} stopping`, STOP_DEADLINE_MS, () => end('relay stopped', 'destroy'));
  const die = (reason: string) =>
    withDeadline(`relay on port ${port} dying`, STOP_DEADLINE_MS, () => end(reason, 'reset'));
  const urlHost = host.includes(':') ? `[${host}]` : host;
  return {
    host,
    port,
    url: `http://${urlHost}:${port}`,
    stop: () => (stopping ??= stop()),
    die: (reason = 'proxy died') => (dying ??= die(reason)),
  };
}
