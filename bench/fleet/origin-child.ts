/**
 * The bench's origin, in a process of its own: `lab` runs the lab as `proxycheck load` does (the
 * remote-assistance host, WebSocket), `echo` a bare TLS echo server on the same address and
 * certificate (the reference). Both use a lab PKI made here; the root is printed for the clients:
 * `{"ca":PEM}` once listening. Answers "rss" on stdin with `{"rss":bytes}`; stops when stdin closes.
 */
import tls from 'node:tls';
import { labAddress } from '../../harness/lab/addresses.ts';
import { Lab } from '../../harness/lab/lab.ts';
import { createLabPki } from '../../harness/lab/pki.ts';
import { RunDir } from '../../harness/lab/rundir.ts';
import { labHostsFor } from '../../harness/runner/run.ts';
import { loadScenarios } from '../../harness/scenarios.ts';

export const HOST = 'ras.flexxible.com';
const [mode, netArg] = process.argv.slice(2);
const net = Number(netArg);
const runDir = new RunDir('proxycheck-bench-origin-');
const pki = await createLabPki(runDir.path);
let stop: () => Promise<void>;
if (mode === 'lab') {
  const set = loadScenarios();
  const profile = set.profiles.get('remote-assistance');
  if (!profile) throw new Error('no remote-assistance profile');
  const lab = await Lab.start({ pki, hosts: labHostsFor(set, [profile]), net });
  stop = () => lab.stop();
} else {
  const leaf = pki.labRoot.issueLeaf([HOST]);
  const server = tls.createServer({ key: leaf.keyPem, cert: leaf.certPem }, (s) => {
    s.on('error', () => {});
    s.pipe(s);
  });
  await new Promise<void>((resolve) => server.listen(443, labAddress(HOST, net), resolve));
  stop = () => new Promise((resolve) => server.close(() => resolve()));
}
process.stdout.write(`${JSON.stringify({ ca: pki.labRoot.cert.certPem })}\n`);
process.stdin.setEncoding('utf8');
process.stdin.on('data', (d: string) => {
  if (d.includes('rss')) process.stdout.write(`${JSON.stringify({ rss: process.memoryUsage().rss })}\n`);
});
process.stdin.on('end', () => {
  void stop().finally(() => {
    runDir.remove();
    process.exit(0);
  });
});
