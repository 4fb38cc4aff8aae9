/**
 * The fleet benchmarks of `npm run bench`, each process planned so none needs more than the
 * 20,000 file descriptors a process may hold here: the proxy (proxy-chain, plain) in one process
 * (two descriptors per tunnel), the origin in another, the clients in a third.
 *  - load-ratio: sessions per second (CONNECT + TLS) the load generator's own session code opens,
 *    against plain Node doing the same, through the same proxy process, in the same run;
 *  - tunnels: N agents of `proxycheck load` (CONNECT, TLS, WebSocket keep-alives) held for S seconds
 *    against the lab, and the reference: plain Node clients and a TLS echo server holding the same
 *    tunnels through the same proxy; RSS of client plus origin, each against the other.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const here = (f: string) => fileURLToPath(new URL(f, import.meta.url));

interface Child {
  proc: ChildProcess;
  next(deadlineMs: number, what: string): Promise<Record<string, unknown>>;
  stop(): Promise<void>;
}

/** Starts a bench child (TypeScript through tsx) whose stdout is JSON lines. */
function child(file: string, args: string[]): Child {
  const proc = spawn(process.execPath, ['--import', 'tsx', here(file), ...args], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const lines: string[] = [];
  const waiters: Array<() => void> = [];
  createInterface({ input: proc.stdout as NodeJS.ReadableStream }).on('line', (l) => {
    lines.push(l);
    waiters.shift()?.();
  });
  const exited = new Promise<void>((r) => proc.once('exit', () => r()));
  return {
    proc,
    async next(deadlineMs, what) {
      if (!lines.length) {
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([
          new Promise<void>((r) => waiters.push(r)),
          exited.then(() => {
            throw new Error(`${file} ${args.join(' ')} exited before ${what}`);
          }),
          new Promise((_, reject) => {
            timer = setTimeout(
              () => reject(new Error(`${file}: no ${what} within ${deadlineMs} ms`)),
              deadlineMs,
            );
          }),
        ]).finally(() => clearTimeout(timer));
      }
      return JSON.parse(lines.shift() as string);
    },
    async stop() {
      proc.stdin?.end();
      const timer = setTimeout(() => proc.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

async function withProxyAndOrigin<T>(
  net: number,
  origin: 'lab' | 'echo',
  fn: (setup: { proxyPort: number; ca: string }, originChild: Child) => Promise<T>,
): Promise<T> {
  const proxy = child('proxy-child.ts', [String(net)]);
  const o = child('origin-child.ts', [origin, String(net)]);
  try {
    const { port } = (await proxy.next(30_000, 'proxy port')) as { port: number };
    const { ca } = (await o.next(60_000, 'origin CA')) as { ca: string };
    return await fn({ proxyPort: port, ca }, o);
  } finally {
    await Promise.all([proxy.stop(), o.stop()]);
  }
}

async function client(setup: object, args: string[], deadlineMs: number): Promise<Record<string, unknown>> {
  const c = child('client-child.ts', [JSON.stringify(setup), ...args]);
  try {
    return await c.next(deadlineMs, `the result of ${args.join(' ')}`);
  } finally {
    await c.stop();
  }
}

export async function benchLoadRatio(net: number, workers = 16, seconds = 10): Promise<string> {
  return withProxyAndOrigin(net, 'lab', async (setup) => {
    // twice each, alternating, so neither side gets the warm machine alone
    const runs: Record<string, number[]> = { generator: [], bare: [] };
    for (let i = 0; i < 2; i++) {
      for (const mode of ['bare', 'generator'] as const) {
        const r = await client(
          setup,
          [`${mode}-loop`, String(workers), String(seconds)],
          seconds * 1000 + 60_000,
        );
        if (Number(r.errors)) throw new Error(`${mode} loop: ${r.errors} sessions failed`);
        runs[mode]?.push(Number(r.sessions) / seconds);
      }
    }
    const rate = (xs: number[] | undefined) => (xs ?? []).reduce((s, x) => s + x, 0) / (xs?.length || 1);
    const gen = rate(runs.generator);
    const bare = rate(runs.bare);
    return `bench load-ratio: ${(gen / bare).toFixed(2)} (generator ${gen.toFixed(0)} sessions/s, bare Node ${bare.toFixed(0)} sessions/s; CONNECT+TLS, ${workers} workers, 2 x ${seconds} s each, proxy-chain in its own process)`;
  });
}

const mib = (b: number) => b / 1024 / 1024;

export async function benchTunnels(net: number, tunnels = 5000, seconds = 60): Promise<string> {
  type Held = Record<
    'held' | 'stillHeld' | 'drops' | 'errors' | 'keepalives' | 'originRss' | 'clientRss',
    number
  >;
  const measure = async (origin: 'lab' | 'echo', mode: string): Promise<Held> =>
    withProxyAndOrigin(net, origin, async (setup, o) => {
      const deadline = 20_000 + seconds * 1000 + 120_000;
      const pending = client(setup, [mode, String(tunnels), String(seconds)], deadline);
      // the origin's RSS while the tunnels are held: asked for half-way through the hold
      // (the client ramps for at most 20 s, then holds)
      pending.catch(() => {});
      await new Promise((r) => setTimeout(r, 22_000 + (seconds * 1000) / 2));
      o.proc.stdin?.write('rss\n');
      const originRss = Number((await o.next(30_000, 'origin RSS')).rss);
      const r = await pending;
      return { ...(r as Held), originRss, clientRss: Number(r.rss) };
    });
  const gen = await measure('lab', 'generator-hold');
  const ref = await measure('echo', 'bare-hold');
  const genRss = gen.clientRss + gen.originRss;
  const refRss = ref.clientRss + ref.originRss;
  return `bench tunnels: ${gen.stillHeld} of ${tunnels} held ${seconds} s, ${gen.drops} drops, ${gen.errors} errors, ${gen.keepalives} keep-alives; RSS ${mib(genRss).toFixed(0)} MiB (generator ${mib(gen.clientRss).toFixed(0)} + lab ${mib(gen.originRss).toFixed(0)}), reference ${mib(refRss).toFixed(0)} MiB (Node client ${mib(ref.clientRss).toFixed(0)} + TLS echo ${mib(ref.originRss).toFixed(0)}, ${ref.stillHeld} held, ${ref.drops} drops), rss-ratio ${(genRss / refRss).toFixed(2)}`;
}
