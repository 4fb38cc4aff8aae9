/**
 * `npm run bench`: measures, in one run, what the proxies cost an agent's bulk transfer, what the
 * main job costs, and whether the load generator is the bottleneck. It prints ratios measured in
 * the same run (the machine varies, ratios less so) and three lines the issue tracker reads:
 *
 *  - `bench main-job:` the default `proxycheck run` (every default proxy x every profile), wall
 *    seconds with the work items side by side (--jobs default) and one after another (--jobs 1), and
 *    whether the outcomes are identical;
 *  - `bench load-ratio:` sessions per second the load generator opens (CONNECT + TLS) against plain
 *    Node through the same proxy process (bench/fleet/);
 *  - `bench tunnels:` 5,000 agent tunnels (CONNECT, TLS, WebSocket keep-alives) held 60 s, drops,
 *    and RSS against plain Node clients and a TLS echo server holding the same tunnels.
 *
 * Before them: concurrency (50 agents, a 75 KB report each, through chain-plain) and throughput (a
 * 64 MiB download direct, through chain-plain and through chain-mitm). BENCH_ONLY=main-job,tunnels
 * (any of throughput, main-job, load-ratio, tunnels) runs only those.
 */
import tls from 'node:tls';
import { reportBody } from '../harness/agent/bodies.ts';
import { TunnelHttpClient } from '../harness/agent/http.ts';
import { startTls } from '../harness/agent/tls.ts';
import { openTunnel } from '../harness/agent/tunnel.ts';
import { labAddress } from '../harness/lab/addresses.ts';
import { Lab } from '../harness/lab/lab.ts';
import { createLabPki } from '../harness/lab/pki.ts';
import { RunDir } from '../harness/lab/rundir.ts';
import { ChainProxy } from '../harness/proxies/chain.ts';
import { DEFAULT_PROXIES } from '../harness/proxies/registry.ts';
import type { StartedProxy } from '../harness/proxies/types.ts';
import { runMatrix } from '../harness/runner/run.ts';
import { benchLoadRatio, benchTunnels } from './fleet/fleet.ts';

const NET = 140;

class SkipThroughput extends Error {}
const HOST = 'flexxibleglobal.blob.core.windows.net';
const BYTES = 64 * 1024 * 1024;

async function download(socket: tls.TLSSocket): Promise<number> {
  const client = new TunnelHttpClient(socket, `https://${HOST}:443`, 60_000);
  const t0 = performance.now();
  const res = await client.request({ method: 'GET', path: `/source?bytes=${BYTES}`, headers: [] });
  const ms = performance.now() - t0;
  await client.close();
  if (res.body.length !== BYTES) throw new Error(`got ${res.body.length} bytes, not ${BYTES}`);
  return BYTES / 1024 / 1024 / (ms / 1000);
}

async function viaProxy(p: StartedProxy, ca: string[]): Promise<number> {
  const tun = await openTunnel({ proxy: p, target: { host: HOST, port: 443 } });
  if (!tun.ok) throw new Error(tun.error);
  const s = await startTls(tun.socket, { servername: HOST, ca });
  if (!s.socket) throw new Error(s.refused ?? s.error);
  return download(s.socket);
}

const only = process.env.BENCH_ONLY?.split(',').map((x) => x.trim());
const wanted = (what: string) => !only || only.includes(what);

async function mainJob(net: number): Promise<string> {
  const key = (r: { proxy: string; profile: string; endpoint: string; check: string; outcome: string }) =>
    `${r.proxy}|${r.profile}|${r.endpoint}|${r.check}|${r.outcome}`;
  const timed = async (jobs?: number) => {
    const t0 = performance.now();
    const report = await runMatrix({
      proxies: DEFAULT_PROXIES,
      profiles: ['all'],
      labNet: net,
      ...(jobs ? { jobs } : {}),
    });
    return { s: (performance.now() - t0) / 1000, report };
  };
  const side = await timed();
  const one = await timed(1);
  const same = side.report.results.map(key).join('\n') === one.report.results.map(key).join('\n');
  return `bench main-job: ${side.s.toFixed(1)} s (${side.report.results.length} results, ${side.report.summary.unmatched} not as expected; one item at a time: ${one.s.toFixed(1)} s; outcomes and order ${same ? 'identical' : 'DIFFERENT'})`;
}

const runDir = new RunDir('proxycheck-bench-');
try {
  if (!wanted('throughput')) throw new SkipThroughput();
  const pki = await createLabPki(runDir.path);
  const lab = await Lab.start({
    pki,
    hosts: [{ host: HOST, ports: [{ port: 443, transport: 'https' }] }],
    net: NET,
  });
  const plain = await new ChainProxy().start({ lab, runDir });
  const mitm = await new ChainProxy({ mitm: true }).start({ lab, runDir });
  try {
    const root = [pki.labRoot.cert.certPem];
    const rss0 = process.memoryUsage().rss;
    const t0 = performance.now();
    const body = reportBody('initial-report', 76_800);
    await Promise.all(
      Array.from({ length: 50 }, async () => {
        const tun = await openTunnel({ proxy: plain, target: { host: HOST, port: 443 } });
        if (!tun.ok) throw new Error(tun.error);
        const s = await startTls(tun.socket, { servername: HOST, ca: root });
        if (!s.socket) throw new Error(s.refused ?? s.error);
        const c = new TunnelHttpClient(s.socket, `https://${HOST}:443`);
        await c.request({ method: 'POST', path: '/echo/report', headers: [], body });
        await c.close();
      }),
    );
    const ms = performance.now() - t0;
    console.log(
      `50 concurrent agents, 75 KB report each via chain-plain: ${ms.toFixed(0)} ms, RSS +${((process.memoryUsage().rss - rss0) / 1024 / 1024).toFixed(1)} MiB`,
    );
    const direct = await download(
      await new Promise<tls.TLSSocket>((resolve, reject) => {
        const s = tls.connect({ host: labAddress(HOST, NET), port: 443, servername: HOST, ca: root }, () =>
          resolve(s),
        );
        s.once('error', reject);
      }),
    );
    const throughPlain = await viaProxy(plain, root);
    const throughMitm = await viaProxy(mitm, [...root, pki.corporate.cert.certPem]);
    console.log(
      `throughput (64 MiB download, MiB/s): direct ${direct.toFixed(0)}, chain-plain ${throughPlain.toFixed(0)}, chain-mitm ${throughMitm.toFixed(0)}`,
    );
    console.log(
      `ratio chain-plain/direct ${(throughPlain / direct).toFixed(2)}, chain-mitm/direct ${(throughMitm / direct).toFixed(2)}`,
    );
  } finally {
    await plain.stop();
    await mitm.stop();
    await lab.stop();
  }
} catch (err) {
  if (!(err instanceof SkipThroughput)) throw err;
} finally {
  runDir.remove();
}
if (wanted('main-job')) console.log(await mainJob(NET + 1));
if (wanted('load-ratio')) console.log(await benchLoadRatio(NET + 2));
if (wanted('tunnels')) console.log(await benchTunnels(NET + 3));
