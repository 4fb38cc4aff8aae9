/**
 * Progress on stderr: plain lines per proxy × profile when stderr is not a terminal, nothing but the
 * summary with --quiet (run and validate), and the one-line tty renderer, which is cleared at the
 * end of a run and on Ctrl-C (on a real pseudo-terminal through util-linux `script`).
 */
import { execFileSync, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { labAddress } from '../harness/lab/addresses.ts';
import type { CheckResult } from '../harness/model.ts';
import { Progress } from '../harness/report/progress.ts';
import { loadScenarios } from '../harness/scenarios.ts';
import { BIN, cli } from './helpers/cli.ts';
import { resultsPerProxy } from './helpers/counts.ts';
import { customerProxy } from './helpers/customer-proxy.ts';
import { labNet } from './helpers/lab-net.ts';
import { outDir, scenarioCopy } from './helpers/scenario-copy.ts';

const CLEAR = '\r\x1b[K';
const PLAIN =
  /^proxycheck: \[(\d+)\/(\d+)\] (\S+): (\d+) results: (\d+) pass, (\d+) fail, (\d+) other; (\d+) unexpected \(\d+\.\d s\)$/;

interface Row {
  id: string;
  proxy: string;
  profile: string;
  outcome: string;
  matched: boolean;
}

/** The per-item counts a plain progress line must show, from a JSON report. */
function countsByItem(results: Row[]): Map<string, number[]> {
  const m = new Map<string, number[]>();
  for (const r of results) {
    const c = m.get(`${r.proxy}/${r.profile}`) ?? [0, 0, 0, 0, 0];
    c[0] = (c[0] ?? 0) + 1;
    const i = r.outcome === 'pass' ? 1 : r.outcome === 'fail' ? 2 : 3;
    c[i] = (c[i] ?? 0) + 1;
    if (!r.matched) c[4] = (c[4] ?? 0) + 1;
    m.set(`${r.proxy}/${r.profile}`, c);
  }
  return m;
}

function checkPlainLines(t: Test, stderr: string, results: Row[]): void {
  t.notOk(stderr.includes('\r') || stderr.includes('\x1b'), 'no control characters in a log');
  const want = countsByItem(results);
  const lines = stderr.trimEnd().split('\n');
  t.equal(lines.length, want.size, 'one line per proxy x profile');
  lines.forEach((line, i) => {
    const m = PLAIN.exec(line);
    t.ok(m, line);
    if (!m) return;
    t.equal(Number(m[1]), i + 1);
    t.equal(Number(m[2]), want.size);
    t.same(m.slice(4, 9).map(Number), want.get(m[3] ?? ''), `${m[3]}: counts as in the report`);
  });
}

t.test(
  'not a terminal: one plain line per proxy x profile on stderr; --quiet: the summary line only',
  async (t) => {
    const octet = String(await labNet(t));
    const dir = scenarioCopy(t);
    const out = outDir(t);
    const args = ['run', '--lab-net', octet, '--scenarios', dir, '--proxies', 'chain-plain,chain-mitm'];
    const r = await cli([...args, '--json', join(out, 'r.json')], { timeoutMs: 90_000 });
    t.equal(r.code, 0, r.stderr);
    const report = JSON.parse(readFileSync(join(out, 'r.json'), 'utf8'));
    checkPlainLines(t, r.stderr, report.results);
    t.match(r.stdout, /^OK: all \d+ results as expected$/m, 'the summary is on stdout');
    t.notMatch(r.stdout, /proxycheck: \[/, 'no progress on stdout');

    const q = await cli([...args, '--quiet'], { timeoutMs: 90_000 });
    t.equal(q.code, 0);
    t.equal(q.stderr, '', 'nothing on stderr');
    const summary = /^\d+ results: .*; \d+ as expected, \d+ not$/m.exec(r.stdout)?.[0];
    t.ok(summary, 'the summary has its totals line');
    t.equal(q.stdout, `${summary}\n`, 'only the summary line of the table');
  },
);

t.test('validate: plain progress lines, and --quiet', async (t) => {
  const octet = await labNet(t);
  const dir = scenarioCopy(t);
  const out = outDir(t);
  // A customer's proxy that resolves the fixture hosts to this lab's addresses.
  const proxy = await customerProxy(t, (host) =>
    host.endsWith('.proxycheck.test') ? labAddress(host, octet) : undefined,
  );
  const args = ['validate', '--proxy', `http://${proxy}`, '--lab-net', String(octet)];
  const v = await cli([...args, '--scenarios', dir, '--json', join(out, 'v.json')], { timeoutMs: 90_000 });
  t.equal(v.code, 0, v.stdout + v.stderr);
  const report = JSON.parse(readFileSync(join(out, 'v.json'), 'utf8'));
  checkPlainLines(t, v.stderr, report.results);
  const q = await cli([...args, '--scenarios', dir, '--quiet'], { timeoutMs: 90_000 });
  t.equal(q.code, 0, q.stderr);
  t.equal(q.stderr, '');
  t.match(q.stdout, /^\d+ results: [^\n]*; \d+ as expected, 0 not\n$/, 'one summary line');
});

function result(outcome: CheckResult['outcome'], matched = true): CheckResult {
  return {
    id: `p/f/h:443/${outcome}`,
    proxy: 'p',
    profile: 'f',
    endpoint: 'h:443',
    check: outcome,
    outcome,
    expected: matched ? outcome : 'pass',
    matched,
    message: '',
    evidence: {},
    remediation: '',
    durationMs: 0,
  };
}

t.test(
  'tty renderer: one line redrawn in place, cut to the width, cleared at the end and on SIGINT',
  async (t) => {
    let clock = 0;
    const writes: string[] = [];
    const stream = { isTTY: true, columns: 200, write: (s: string) => writes.push(s) };
    const p = new Progress({ stream, mode: 'tty', total: 2, tickMs: 0, now: () => clock });
    t.equal(writes.length, 1, 'drawn at once');
    t.ok(writes[0]?.startsWith(`${CLEAR}proxycheck [${'-'.repeat(20)}] 0/2 | 0 results`), String(writes[0]));
    p.itemStart('chain-plain', 'flexxagent');
    p.result(result('pass'));
    p.result(result('fail', false));
    clock = 3_000;
    p.result(result('dependency_fail'));
    t.equal(
      writes.at(-1),
      `${CLEAR}proxycheck [--------------------] 0/2 | 3 results: 1 pass, 1 fail, 1 other; 1 unexpected | 3s | chain-plain/flexxagent`,
    );
    p.itemDone('chain-plain', 'flexxagent');
    t.match(writes.at(-1), / 1\/2 \| /);
    t.match(writes.at(-1), /\[#{10}-{10}\]/, 'bar half full');
    for (const w of writes) {
      t.ok(w.startsWith(CLEAR), 'every draw starts by clearing the line');
      t.notMatch(w, /\n/, 'never a newline: the line is redrawn in place');
      t.ok(w.length - CLEAR.length <= 199, 'never wider than the terminal');
    }
    const before = writes.length;
    p.result(result('pass'));
    t.equal(writes.length, before + 1);
    p.result(result('pass'));
    t.equal(writes.length, before + 2);

    // Ctrl-C: our listener runs before the lifecycle's, whose "stopping" line must start clean.
    const listener = process.listeners('SIGINT')[0];
    t.ok(listener, 'a SIGINT listener is installed');
    (listener as () => void)();
    t.equal(writes.at(-1), CLEAR, 'line cleared on SIGINT');
    t.notOk(process.listeners('SIGINT').includes(listener as never), 'and removed');
    const after = writes.length;
    p.result(result('pass'));
    p.stop();
    t.equal(writes.length, after, 'nothing drawn after that');

    // Narrow terminal: cut, never wrapped.
    const narrow: string[] = [];
    const q = new Progress({
      stream: { isTTY: true, columns: 30, write: (s: string) => narrow.push(s) },
      mode: 'tty',
      total: 1,
      tickMs: 0,
    });
    q.stop();
    t.equal(narrow[0]?.length, CLEAR.length + 29);
    t.equal(narrow.at(-1), CLEAR);

    // Plain and quiet modes never draw a line of their own.
    const plain: string[] = [];
    const r = new Progress({ stream: { write: (s: string) => plain.push(s) }, mode: 'plain', total: 1 });
    r.itemStart('p', 'f');
    r.result(result('pass'));
    r.itemDone('p', 'f');
    r.stop();
    t.equal(plain.length, 1);
    t.match(
      plain[0],
      /^proxycheck: \[1\/1\] p\/f: 1 results: 1 pass, 0 fail, 0 other; 0 unexpected \(0\.\d s\)\n$/,
    );
    const quiet: string[] = [];
    const s = new Progress({
      stream: { isTTY: true, write: (x: string) => quiet.push(x) },
      mode: 'quiet',
      total: 1,
    });
    s.itemStart('a', 'b');
    s.result(result('pass'));
    s.itemDone('a', 'b');
    s.note('shard 1/2');
    s.stop();
    t.same(quiet, []);
  },
);

function hasScript(): boolean {
  try {
    execFileSync('script', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** Runs a shell command line with stderr on a pseudo-terminal (util-linux `script`). */
function onPty(command: string) {
  const child = spawn('script', ['-qefc', command, '/dev/null'], { stdio: ['pipe', 'pipe', 'pipe'] });
  let tty = '';
  child.stdout.on('data', (d) => (tty += d));
  const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
  return { child, exited, tty: () => tty };
}

async function until(what: string, ok: () => boolean, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

t.test(
  'on a real terminal: the bar is drawn, then cleared at the end and on Ctrl-C',
  { skip: hasScript() ? false : 'util-linux script is not installed' },
  async (t) => {
    // one lab net: the run below ends before validate starts on it
    const octet = await labNet(t);
    const dir = scenarioCopy(t);
    const out = outDir(t);
    const stdoutFile = join(out, 'table.txt');
    const profiles = loadScenarios({ dir }).profiles.size;
    const n = resultsPerProxy(loadScenarios({ dir }));
    const run = onPty(
      `${process.execPath} ${BIN} run --lab-net ${octet} --scenarios ${dir} --proxies chain-plain > ${stdoutFile}`,
    );
    t.teardown(() => run.child.kill('SIGKILL'));
    t.equal(await run.exited, 0, run.tty());
    const tty = run.tty();
    t.ok(
      tty.includes(`${CLEAR}proxycheck [${'#'.repeat(20)}] ${profiles}/${profiles} | ${n} results`),
      `the bar reached ${profiles}/${profiles}`,
    );
    const last = tty.lastIndexOf(CLEAR);
    t.notMatch(tty.slice(last + CLEAR.length), /proxycheck \[/, 'the last thing done to the line is a clear');
    t.notMatch(tty, /proxycheck: \[/, 'no plain lines on a terminal');
    t.match(
      readFileSync(stdoutFile, 'utf8'),
      new RegExp(`${n} results: .*${n} as expected, 0 not`),
      'the table went to stdout',
    );

    // A proxy that accepts and never answers: validate hangs in its preflight with the bar drawn.
    const hole = net.createServer(() => {});
    await new Promise<void>((r) => hole.listen(0, '127.0.0.1', r));
    t.teardown(() => new Promise<void>((r) => hole.close(() => r())));
    const port = (hole.address() as net.AddressInfo).port;
    const v = onPty(
      `${process.execPath} ${BIN} validate --proxy http://127.0.0.1:${port} --lab-net ${octet} --scenarios ${dir}`,
    );
    t.teardown(() => v.child.kill('SIGKILL'));
    await until('progress bar on the terminal', () => v.tty().includes('proxycheck ['), 60_000);
    v.child.stdin.write('\x03'); // Ctrl-C typed on the terminal
    t.equal(await v.exited, 130);
    const text = v.tty();
    const bar = text.lastIndexOf('proxycheck [');
    const stopping = text.indexOf('SIGINT received');
    t.ok(bar >= 0 && stopping > bar, text);
    t.match(text.slice(bar, stopping), CLEAR, 'the bar was cleared before the "stopping" line');
    t.notMatch(text.slice(stopping), /proxycheck \[/, 'and not drawn again');
  },
);
