/**
 * A blackhole: an address on loopback where a TCP SYN is never answered (neither SYN-ACK nor RST),
 * as for a proxy host that is down behind a firewall that drops packets. Done honestly and without
 * root: a child Node process listens on host:0 with `backlog: 1` (0 would mean Node's default, 511)
 * and reports its port on stdout; we SIGSTOP it, so it never accept()s, and open filler connections
 * until the kernel's accept queue is full. Linux then drops every further SYN to that port
 * (tcp_conn_request: "listen queue overflow"), and a client's connect stays in SYN-SENT until its
 * own deadline (or the kernel's, about 2 min at tcp_syn_retries 6). With backlog 1 two connections
 * complete; the start goes on opening them until one does not complete within PROBE_MS, and fails
 * if that never happens.
 *
 * The child is launched by the toolkit (toolkit/process.ts): it dies with us even when we are
 * SIGKILLed (setpriv --pdeathsig KILL; SIGKILL ends a stopped process too), and a cleanup is
 * registered at once. stop() destroys the fillers, SIGKILLs the child and waits for its exit; the
 * port then refuses connections.
 */
import type { ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { errorMessage, SetupError, withDeadline } from '../errors.ts';
import { launchProcess } from './toolkit/process.ts';
import { waitForLine } from './toolkit/ready.ts';

export interface BlackholeOptions {
  /** Loopback address to listen on, e.g. 127.0.0.1 or a lab address. */
  host: string;
  /** Deadline for the whole start: child up, port reported, child stopped, queue full (default 5 s). */
  deadlineMs?: number;
}

export interface StartedBlackhole {
  host: string;
  port: number;
  /** The stopped listener's pid (gone after stop()). */
  pid: number;
  /** Destroys the fillers, SIGKILLs the listener and waits for its exit; idempotent. */
  stop(): Promise<void>;
}

const DEFAULT_DEADLINE_MS = 5_000;
/** A connect to the full queue must stay unanswered this long before the start counts it full. */
const PROBE_MS = 300;
/** Filler connections tried before giving up (backlog 1 takes 2 on Linux). */
const MAX_FILLERS = 8;

/** The listener: backlog 1, its port on stdout, then nothing (it is stopped before any accept). */
const CHILD = `
const net = require('node:net');
const server = net.createServer();
server.on('error', (err) => {
  process.stderr.write('blackhole listen on ' + process.argv[1] + ' failed: ' + err.message + '\\n');
  process.exit(1);
});
server.listen({ host: process.argv[1], port: 0, backlog: 1 }, () => {
  process.stdout.write(server.address().port + '\\n');
});
`;

/** What a connect did within `ms`: completed, failed, or nothing yet (the socket is then destroyed). */
function tryConnect(
  host: string,
  port: number,
  ms: number,
): Promise<{ socket: Socket } | { error: Error } | { pending: true }> {
  return new Promise((resolve) => {
    let settled = false;
    const settle = (r: { socket: Socket } | { error: Error } | { pending: true }) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve(r);
    };
    const socket = connect({ host, port });
    // Timers run before I/O in an event-loop turn: after a stall both can be due at once, and the
    // check (setImmediate) comes after the I/O, so a completed connect is never taken for silence.
    const timer = setTimeout(
      () =>
        setImmediate(() => {
          if (settled) return;
          socket.destroy();
          settle({ pending: true });
        }),
      ms,
    );
    socket.once('connect', () => settle({ socket }));
    socket.once('error', (error) => settle({ error }));
  });
}

/** Resolves once /proc says `pid` is stopped (state T); at once where there is no /proc. */
async function stoppedState(pid: number, signal: AbortSignal): Promise<void> {
  for (;;) {
    let stat: string;
    try {
      stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    } catch {
      return;
    }
    // `pid (comm) S ...`: comm may hold spaces and parentheses, the state follows the last ')'
    if (stat.slice(stat.lastIndexOf(')') + 2).startsWith('T')) return;
    signal.throwIfAborted();
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** Starts a blackhole on `opts.host` (a port of its own); see the top of this file. */
export async function startBlackhole(opts: BlackholeOptions): Promise<StartedBlackhole> {
  const { host } = opts;
  const deadlineMs = opts.deadlineMs ?? DEFAULT_DEADLINE_MS;
  const what = `blackhole on ${host}`;
  const child = launchProcess({
    what,
    cmd: process.execPath,
    args: ['-e', CHILD, host],
    cleanupName: (pid) => `${what} (stopped listener, pid ${pid})`,
    stopSignal: 'SIGKILL',
    stopDeadlineMs: 2_000,
  });
  const fillers: Socket[] = [];
  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      for (const s of fillers) s.destroy();
      await child.stop();
    })();
    return stopping;
  };
  try {
    const port = await withDeadline(`${what} starting`, deadlineMs, (deadline) =>
      fill(child.child, host, deadlineMs, deadline, fillers, () => child.output()),
    );
    return { host, port, pid: child.child.pid as number, stop };
  } catch (err) {
    await stop();
    if (err instanceof SetupError) throw err;
    throw new SetupError(errorMessage(err), { output: child.output() }, { cause: err });
  }
}

/** The start after the spawn: port read, listener stopped, queue filled and checked full. */
async function fill(
  child: ChildProcess,
  host: string,
  deadlineMs: number,
  deadline: AbortSignal,
  fillers: Socket[],
  output: () => string,
): Promise<number> {
  const what = `blackhole on ${host}`;
  const gone = new AbortController();
  const onExit = () => {
    const code = child.exitCode ?? child.signalCode;
    const why = output().trim().split('\n')[0] || 'no output';
    gone.abort(
      new SetupError(`${what}: the listener exited (code ${code}) before reporting its port: ${why}`),
    );
  };
  const onError = (err: Error) =>
    gone.abort(new SetupError(`${what}: cannot run ${process.execPath}: ${err.message}`));
  child.once('exit', onExit).once('error', onError);
  let line: string;
  try {
    if (!child.stdout) throw new SetupError(`${what}: no stdout to read the port from`);
    line = await waitForLine(child.stdout, /^\d+$/, {
      what: `${what} reporting its port`,
      deadlineMs,
      signal: AbortSignal.any([gone.signal, deadline]),
    });
  } finally {
    child.off('exit', onExit).off('error', onError);
  }
  const port = Number(line.trim());
  const pid = child.pid as number;
  process.kill(pid, 'SIGSTOP');
  await stoppedState(pid, deadline);

  for (let n = 0; n <= MAX_FILLERS; n++) {
    const r = await tryConnect(host, port, PROBE_MS);
    if (deadline.aborted && 'socket' in r) r.socket.destroy(); // stop() has run: it cannot see this one
    deadline.throwIfAborted();
    if ('pending' in r) return port; // the SYN went unanswered: the queue is full
    if ('error' in r) {
      throw new SetupError(
        `${what}:${port}: a connect to the full accept queue was answered (${errorMessage(r.error)}) instead of left unanswered`,
      );
    }
    r.socket.on('error', () => {}); // fillers are never read; only stop() ends them
    fillers.push(r.socket);
  }
  throw new SetupError(
    `${what}:${port}: still accepting connections after ${MAX_FILLERS} fillers (within ${PROBE_MS} ms each): the kernel did not drop SYNs to a full accept queue`,
  );
}
