/** Runs a short command (docker, a helper binary) to completion with a named deadline. */
import { spawn } from 'node:child_process';
import { DeadlineError, errorMessage, SetupError } from '../../errors.ts';

export interface CommandResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a command, collecting its output; `echo` streams stderr+stdout to our stderr as well. */
export function runCommand(
  cmd: string,
  args: string[],
  opts: { timeoutMs: number; what: string; echo?: boolean; env?: NodeJS.ProcessEnv },
): Promise<CommandResult> {
  return new Promise((resolve, reject) => {
    let stdout = '';
    let stderr = '';
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env: opts.env ?? process.env });
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new DeadlineError(opts.what, opts.timeoutMs));
    }, opts.timeoutMs);
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
      if (opts.echo) process.stderr.write(d);
    });
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
      if (opts.echo) process.stderr.write(d);
    });
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(new SetupError(`${opts.what}: cannot run ${cmd}: ${errorMessage(err)}`));
    });
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}
