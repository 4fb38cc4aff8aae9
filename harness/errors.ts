/**
 * One error class per failure kind, each with a stable `code` (after undici's lib/core/errors.js).
 * Messages are one line and name any deadline that ran out.
 */
export class ProxycheckError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ProxycheckError';
    this.code = code;
  }
}

/** Bad command-line input or bad scenario data: exit code 2. */
export class UsageError extends ProxycheckError {
  constructor(message: string) {
    super('PC_USAGE', message);
    this.name = 'UsageError';
  }
}

/** A network wait that ran past its deadline. The message always names the deadline. */
export class DeadlineError extends ProxycheckError {
  readonly deadlineMs: number;
  constructor(what: string, deadlineMs: number) {
    super('PC_DEADLINE', `${what}: no answer within ${deadlineMs} ms`);
    this.name = 'DeadlineError';
    this.deadlineMs = deadlineMs;
  }
}

/** Our own lab (origins, PKI, proxies we start) could not be set up. Maps to outcome `setup_fail`. */
export class SetupError extends ProxycheckError {
  readonly evidence: Record<string, unknown>;
  constructor(message: string, evidence: Record<string, unknown> = {}, options?: { cause?: unknown }) {
    super('PC_SETUP', message, options);
    this.name = 'SetupError';
    this.evidence = evidence;
  }
}

/**
 * A bug in proxycheck itself, found while judging (our own lab's answer arrived intact but could
 * not be read, say). The runner turns it into `harness_fail`, never into a proxy `fail`.
 */
export class HarnessError extends ProxycheckError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('PC_HARNESS', message, options);
    this.name = 'HarnessError';
  }
}

/** Rethrows our own bugs so a kind's catch-all around proxy traffic cannot turn them into a `fail`. */
export function rethrowHarness(err: unknown): void {
  if (err instanceof HarnessError) throw err;
}

export function errorMessage(err: unknown): string {
  if (err instanceof ProxycheckError) return err.message;
  if (err instanceof Error) {
    const code = (err as NodeJS.ErrnoException).code;
    const msg = err.message.split('\n')[0] ?? '';
    return code && !msg.includes(code) ? `${code}: ${msg}` : msg;
  }
  return String(err);
}

/** Runs `fn` with a deadline; rejects with a DeadlineError naming `what` if it takes longer. */
export async function withDeadline<T>(
  what: string,
  ms: number,
  fn: (signal: AbortSignal) => Promise<T>,
): Promise<T> {
  const controller = new AbortController();
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      const err = new DeadlineError(what, ms);
      controller.abort(err);
      reject(err);
    }, ms);
  });
  try {
    return await Promise.race([fn(controller.signal), deadline]);
  } finally {
    clearTimeout(timer);
  }
}
