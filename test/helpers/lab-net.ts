/**
 * Lab nets for tests, handed out so that no two running processes hold the same one.
 *
 * A lab puts its origins on 127.<net>.<a>.<b> (harness/lab/addresses.ts), so two labs on one net
 * collide (EADDRINUSE), and tap runs test files in parallel processes. A net is held by a TCP
 * listener on 127.<net>.255.255, port HOLD_PORT, for as long as it is in use: the first net in
 * the range whose hold address binds is ours. No state file: the kernel is the registry, and a
 * process that dies (even by SIGKILL) drops its listeners, so its nets are free again at once.
 *
 * 127.<net>.255.255 is never a lab host's address: the last octet of a lab address is
 * 1 + (digest % 254), from 1 to 254. HOLD_PORT is below Linux's ephemeral range (32768–60999), so
 * no port-0 listener or outgoing connection of the lab takes it first. The range is 150–254: the
 * CLI accepts 1–254, the main job's default is 77, bench/run.ts uses 140 and 141, and 127.0.x.x
 * (systemd-resolved, Debian's 127.0.1.1) is below anything a lab may use.
 */
import net from 'node:net';

export const LAB_NET_FIRST = 150;
export const LAB_NET_LAST = 254;
export const HOLD_PORT = 32_077;

/** Where a net is held: an address no lab host can get. */
export function holdAddress(n: number): string {
  return `127.${n}.255.255`;
}

export interface LabNetLease {
  readonly net: number;
  /** Frees the net for anyone (this process or another); safe to call twice. */
  release(): Promise<void>;
}

export interface LabNetRange {
  first?: number;
  last?: number;
}

// Where this process looks first: after the net it took last, so a net just released (whose lab
// may still be closing sockets in a child process) is the last one handed out again. Processes
// start at different places, so two tap jobs rarely try the same nets at the same moment.
let cursor = process.pid;

function tryHold(n: number): Promise<net.Server | undefined> {
  return new Promise((resolve, reject) => {
    const server = net.createServer((socket) => socket.destroy());
    server.once('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'EADDRINUSE') resolve(undefined);
      else reject(new Error(`cannot hold lab net ${n} on ${holdAddress(n)}:${HOLD_PORT}: ${err.message}`));
    });
    server.listen({ host: holdAddress(n), port: HOLD_PORT, exclusive: true }, () => {
      server.unref(); // a held net never keeps the process alive
      resolve(server);
    });
  });
}

/** Takes a lab net no other holder has; release it when the labs on it are stopped. */
export async function reserveLabNet(range: LabNetRange = {}): Promise<LabNetLease> {
  const first = range.first ?? LAB_NET_FIRST;
  const last = range.last ?? LAB_NET_LAST;
  if (!Number.isInteger(first) || !Number.isInteger(last) || first < 1 || last > 254 || first > last) {
    throw new Error(`lab net range must lie within 1–254, not ${first}–${last}`);
  }
  const size = last - first + 1;
  for (let i = 0; i < size; i++) {
    const n = first + ((cursor + i) % size);
    const server = await tryHold(n);
    if (!server) continue;
    cursor += i + 1;
    let closed: Promise<void> | undefined;
    return {
      net: n,
      release: () => {
        closed ??= new Promise<void>((resolve) => server.close(() => resolve()));
        return closed;
      },
    };
  }
  throw new Error(
    `no lab net free in ${first}–${last}: each is held by a listener on 127.N.255.255:${HOLD_PORT} ` +
      `(too many tests at once, or something else listens on *:${HOLD_PORT})`,
  );
}

/**
 * A lab net for test `t`, released when `t` ends. Take it before anything that listens on it:
 * teardowns run last-registered first, so the net is freed after the labs on it have stopped.
 */
export async function labNet(t: { teardown(fn: () => unknown): void }, range?: LabNetRange): Promise<number> {
  const lease = await reserveLabNet(range);
  t.teardown(() => lease.release());
  return lease.net;
}
