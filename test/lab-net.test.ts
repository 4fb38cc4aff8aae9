/**
 * The test lab-net allocator (test/helpers/lab-net.ts): no two holders, in one process or in
 * several, get the same net; a released net, or one whose holder died, can be had again.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import t, { type Test } from 'tap';
import { labAddress } from '../harness/lab/addresses.ts';
import {
  HOLD_PORT,
  holdAddress,
  LAB_NET_FIRST,
  LAB_NET_LAST,
  labNet,
  reserveLabNet,
} from './helpers/lab-net.ts';

const HOLDER = fileURLToPath(new URL('./helpers/lab-net-holder.ts', import.meta.url));

/** A child process holding `count` nets (of `range`, if given); resolves with them once held. */
function holder(
  t: Test,
  count: number,
  range?: [number, number],
): Promise<{ child: ChildProcess; nets: number[] }> {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', HOLDER, String(count), ...(range ?? []).map(String)],
    { stdio: ['pipe', 'pipe', 'pipe'] },
  );
  t.teardown(() => {
    child.kill('SIGKILL');
  });
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (d) => (stdout += d));
  child.stderr?.on('data', (d) => (stderr += d));
  return new Promise((resolve, reject) => {
    child.stdout?.on('data', () => {
      if (stdout.includes('\n')) resolve({ child, nets: JSON.parse(stdout) as number[] });
    });
    child.on('exit', (code) => reject(new Error(`holder exited ${code} before holding: ${stderr}`)));
  });
}

const exited = (child: ChildProcess) =>
  new Promise<void>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve();
    else child.once('exit', () => resolve());
  });

t.test('the hold address is one no lab host can get, on a net the CLI accepts', async (t) => {
  t.ok(LAB_NET_FIRST >= 1 && LAB_NET_LAST <= 254, 'inside the CLI range 1–254');
  t.ok(77 < LAB_NET_FIRST || 77 > LAB_NET_LAST, "never the main job's default net 77");
  // a lab address's last octet is 1 + digest % 254, 1–254: try enough names to hit both ends
  const lastOctets = new Set<number>();
  for (let i = 0; i < 20_000; i++) lastOctets.add(Number(labAddress(`h${i}.test`, 200).split('.')[3]));
  t.equal(Math.min(...lastOctets), 1);
  t.equal(Math.max(...lastOctets), 254);
  t.equal(holdAddress(200), '127.200.255.255');
});

t.test('allocations in one process never share a net; a released net can be had again', async (t) => {
  const leases = await Promise.all(Array.from({ length: 8 }, () => reserveLabNet()));
  t.teardown(() => Promise.all(leases.map((l) => l.release())));
  const nets = leases.map((l) => l.net);
  t.equal(new Set(nets).size, nets.length, `all different: ${nets.join(', ')}`);
  for (const n of nets) t.ok(n >= LAB_NET_FIRST && n <= LAB_NET_LAST, `${n} in range`);

  const first = leases[0];
  if (!first) throw new Error('no lease');
  const only = { first: first.net, last: first.net };
  await t.rejects(reserveLabNet(only), /no lab net free in/, 'a held net is not handed out twice');
  await first.release();
  await first.release(); // twice is harmless
  const again = await reserveLabNet(only);
  t.teardown(() => again.release());
  t.equal(again.net, first.net, 'released, it can be had again');
});

t.test('labNet(t) holds the net until the test ends', async (t) => {
  let held = 0;
  await t.test('a test with a net', async (t) => {
    held = await labNet(t);
    await t.rejects(reserveLabNet({ first: held, last: held }), /no lab net free/);
  });
  const after = await reserveLabNet({ first: held, last: held });
  t.teardown(() => after.release());
  t.equal(after.net, held, 'freed by the teardown');
});

t.test('allocations in different processes never share a net', async (t) => {
  const [a, b] = await Promise.all([holder(t, 5), holder(t, 5)]);
  const mine = await Promise.all(Array.from({ length: 5 }, () => reserveLabNet()));
  t.teardown(() => Promise.all(mine.map((l) => l.release())));
  const all = [...a.nets, ...b.nets, ...mine.map((l) => l.net)];
  t.equal(new Set(all).size, 15, `all different: ${all.join(', ')}`);

  // what another process holds is held here too, on the address and port the design names
  const theirs = a.nets[0] ?? 0;
  await t.rejects(reserveLabNet({ first: theirs, last: theirs }), /no lab net free/);
  const probe = net.connect({ host: holdAddress(theirs), port: HOLD_PORT });
  await t.resolves(new Promise((resolve, reject) => probe.once('connect', resolve).once('error', reject)));
  probe.destroy();
});

t.test('a holder that dies frees its nets without any cleanup', async (t) => {
  const h = await holder(t, 2);
  h.child.kill('SIGKILL');
  await exited(h.child);
  for (const n of h.nets) {
    const lease = await reserveLabNet({ first: n, last: n });
    t.teardown(() => lease.release());
    t.equal(lease.net, n, `net ${n} free again after SIGKILL`);
  }
});

t.test('a holder that ends normally frees its nets too', async (t) => {
  const h = await holder(t, 1);
  h.child.stdin?.end();
  await exited(h.child);
  const n = h.nets[0] ?? 0;
  const lease = await reserveLabNet({ first: n, last: n });
  t.teardown(() => lease.release());
  t.equal(lease.net, n);
});
