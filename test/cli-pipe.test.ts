/** A reader that goes away (`proxycheck list | head -1`) ends the output quietly: no stack trace. */
import { spawn } from 'node:child_process';
import t from 'tap';
import { BIN } from './helpers/cli.ts';

for (const args of [['list'], ['run', '--help']]) {
  t.test(`proxycheck ${args.join(' ')} | head -1`, async (t) => {
    const { code, stderr } = await new Promise<{ code: number | null; stderr: string }>((resolve, reject) => {
      // the shell closes the pipe after one line, as `head -1` does
      const child = spawn(
        'bash',
        // pipefail: the exit code is proxycheck's, not head's
        ['-c', `set -o pipefail; "${process.execPath}" "${BIN}" ${args.join(' ')} | head -c 1 >/dev/null`],
        {
          stdio: ['ignore', 'ignore', 'pipe'],
        },
      );
      let stderr = '';
      child.stderr.on('data', (d) => (stderr += d));
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        reject(new Error('not done within 30 s'));
      }, 30_000);
      child.on('close', (code) => {
        clearTimeout(timer);
        resolve({ code, stderr });
      });
    });
    t.equal(code, 0);
    t.notMatch(stderr, /EPIPE|Error|at /, 'nothing on stderr about the closed pipe');
  });
}
