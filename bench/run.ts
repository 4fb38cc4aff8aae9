/**
 * `npm run bench`: measures, in one run, what the proxies cost an agent's bulk transfer and what a
 * matrix run costs, and prints ratios (not absolute targets: the machine varies, ratios less so).
 *
 *  - concurrency first (so RSS growth is not hidden by freed download buffers), then
 *  - throughput: a 64 MiB download from a lab origin direct, through chain-plain and through
 *    chain-mitm (the agent trusting the corporate CA); ratio = proxied / direct.
 *  - concurrency: 50 agents each opening a tunnel and sending a 75 KB report at once through
 *    chain-plain; wall time and RSS growth.
 *  - matrix: wall time of `runMatrix` for the default proxies × flexxagent.
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

const NET = 140;
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

const runDir = new RunDir('proxycheck-bench-');
try {
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
  const t1 = performance.now();
  const report = await runMatrix({
    proxies: DEFAULT_PROXIES,
    profiles: ['flexxagent'],
    labNet: NET + 1,
  });
  console.log(
    `matrix (${DEFAULT_PROXIES.length} default proxies × flexxagent, ${report.results.length} results incl. lab PKI): ${(performance.now() - t1).toFixed(0)} ms, ${report.summary.unmatched} unmatched`,
  );
} finally {
  runDir.remove();
}
