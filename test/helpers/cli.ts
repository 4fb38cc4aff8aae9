import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { Test } from 'tap';

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
