/**
 * Readiness waits, each with a deadline named in its error: a TCP port that accepts, and a log
 * line that says a program is ready.
 */
import { connect } from 'node:net';
import type { Readable } from 'node:stream';
import { StringDecoder } from 'node:string_decoder';
import { DeadlineError } from '../../errors.ts';

/** Polls TCP connects to 127.0.0.1:port until one succeeds; DeadlineError naming `what` otherwise. */
export async function waitForListening(port: number, deadlineMs: number, what: string): Promise<void> {
  const until = performance.now() + deadlineMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect({ host: '127.0.0.1', port });
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    if (performance.now() > until) throw new DeadlineError(`${what} accepting connections`, deadlineMs);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Longest unfinished line kept while waiting for its end. */
const MAX_PARTIAL = 64 * 1024;

export interface LineWait {
  /** Names the wait in the DeadlineError: `<what>: no answer within <deadlineMs> ms`. */
  what: string;
  deadlineMs: number;
  /** Ends the wait early, rejecting with the signal's reason (e.g. "the process exited"). */
  signal?: AbortSignal;
}

/**
 * Resolves with the first line from `stream` (from now on) that matches `pattern` (a line still
 * being written counts once it matches); rejects with a DeadlineError naming `what`, or with the
 * abort reason. The end of the stream does not end the wait: whoever owns the stream knows better
 * why it ended (an exit code, a FATAL line) and says so through `signal`.
 */
export function waitForLine(stream: Readable, pattern: RegExp, o: LineWait): Promise<string> {
  return new Promise<string>((resolve, reject) => {
    const { signal } = o;
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    const decoder = new StringDecoder('utf8');
    let partial = '';
    const matches = (line: string) => {
      pattern.lastIndex = 0;
      return pattern.test(line);
    };
    const onData = (d: Buffer | string) => {
      partial += typeof d === 'string' ? d : decoder.write(d);
      const lines = partial.split('\n');
      partial = (lines.pop() ?? '').slice(-MAX_PARTIAL);
      const found = lines.find(matches) ?? (matches(partial) ? partial : undefined);
      if (found !== undefined) finish(() => resolve(found));
    };
    const onAbort = () => finish(() => reject(signal?.reason));
    const timer = setTimeout(
      () => finish(() => reject(new DeadlineError(o.what, o.deadlineMs))),
      o.deadlineMs,
    );
    const finish = (settle: () => void) => {
      clearTimeout(timer);
      stream.off('data', onData);
      signal?.removeEventListener('abort', onAbort);
      settle();
    };
    stream.on('data', onData);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
