import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Test } from 'tap';
import type { RunReport } from '../../harness/model.ts';

export const BIN = fileURLToPath(new URL('../../bin/proxycheck.js', import.meta.url));

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `proxycheck ARGS` as a user would, with a deadline named in its error. */
export function cli(
  args: string[],
  opts: { env?: Record<string, string>; timeoutMs?: number } = {},
): Promise<CliResult> {
  const timeoutMs = opts.timeoutMs ?? 60_000;
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, ...opts.env },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`proxycheck ${args.join(' ')}: not done within ${timeoutMs} ms`));
    }, timeoutMs);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/**
 * `proxycheck ARGS --json FILE` (run or validate) and the JSON report it wrote, or undefined when
 * it wrote none (a one-line error: the test asserts on code and stderr). FILE is in a temp
 * directory removed when `t` ends.
 */
export async function cliReport(
  t: Test,
  args: string[],
  opts: { env?: Record<string, string>; timeoutMs?: number } = {},
): Promise<CliResult & { report: RunReport | undefined }> {
  const dir = mkdtempSync(join(tmpdir(), 'proxycheck-test-report-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const json = join(dir, 'report.json');
  const r = await cli([...args, '--json', json], opts);
  let report: RunReport | undefined;
  try {
    report = JSON.parse(readFileSync(json, 'utf8')) as RunReport;
  } catch {
    report = undefined;
  }
  return { ...r, report };
}

/** The exit code's assertion message: the ends of what the run printed. */
export const printed = (r: CliResult): string => `${r.stdout.slice(-1500)}\n${r.stderr.slice(-1500)}`;

/**
 * `proxycheck run` of built-in or file definitions through the CLI, asserting that it exits 0 and
 * that every result passes (each one that does not is listed); the report for further checks.
 */
export async function runPassing(
  t: Test,
  o: {
    proxies: string[];
    profiles: string;
    runtime: 'process' | 'container';
    labNet: number;
    env?: Record<string, string>;
    timeoutMs?: number;
  },
): Promise<RunReport> {
  const r = await cliReport(
    t,
    ['run', '--proxies', o.proxies.join(','), '--profiles', o.profiles, '--runtime', o.runtime].concat([
      '--lab-net',
      String(o.labNet),
    ]),
    { timeoutMs: o.timeoutMs ?? 240_000, ...(o.env ? { env: o.env } : {}) },
  );
  t.equal(r.code, 0, printed(r));
  const report = r.report ?? { results: [], proxies: [] };
  t.ok(report.results.length > 0, 'results');
  t.same(
    report.results.filter((x) => x.outcome !== 'pass').map((x) => `${x.id}: ${x.outcome}: ${x.message}`),
    [],
    'every result passes',
  );
  return report as RunReport;
}

export interface Foreground {
  child: ChildProcess;
  /** Resolves with the exit code when the process has closed. */
  exited: Promise<number | null>;
  stdout(): string;
  stderr(): string;
}

/**
 * `proxycheck ARGS` left running in the foreground (`lab up`, `serve`) until it prints `ready`,
 * within a named deadline; killed, if still up, when `t` ends, and gone before its lab net is
 * released.
 */
export async function foreground(
  t: Test,
  args: string[],
  ready: string,
  deadlineMs = 30_000,
): Promise<Foreground> {
  const child = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  t.teardown(() => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGKILL');
    return exited;
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => (stdout += d));
  child.stderr.on('data', (d) => (stderr += d));
  const deadline = Date.now() + deadlineMs;
  while (!stdout.includes(ready)) {
    if (child.exitCode !== null)
      throw new Error(`proxycheck ${args[0]} exited (${child.exitCode}) first: ${stdout}${stderr}`);
    if (Date.now() > deadline)
      throw new Error(
        `proxycheck ${args[0]}: "${ready}" not printed within ${deadlineMs} ms: ${stdout}${stderr}`,
      );
    await new Promise((r) => setTimeout(r, 50));
  }
  return { child, exited, stdout: () => stdout, stderr: () => stderr };
}
