/**
 * Everything a run starts registers its own stop here, right where it is created. On success,
 * failure, SIGINT or SIGTERM the stops run in reverse order, so nothing is left running.
 */
import { SetupError } from './errors.ts';

type Stop = () => Promise<void> | void;

const stops = new Map<number, { what: string; stop: Stop }>();
let nextId = 1;
let handlersInstalled = false;
let stopping: Promise<void> | undefined;
let stopSignal: string | undefined;

export function onCleanup(what: string, stop: Stop): () => void {
  const id = nextId++;
  stops.set(id, { what, stop });
  return () => {
    stops.delete(id);
  };
}

export async function cleanupAll(deadlineMs = 20_000): Promise<void> {
  stopping ??= (async () => {
    const entries = [...stops.entries()].reverse();
    stops.clear();
    for (const [, { what, stop }] of entries) {
      let timer: NodeJS.Timeout | undefined;
      try {
        await Promise.race([
          Promise.resolve().then(stop),
          new Promise((_, reject) => {
            timer = setTimeout(
              () => reject(new Error(`stopping ${what}: not done within ${deadlineMs} ms`)),
              deadlineMs,
            );
          }),
        ]);
      } catch (err) {
        process.stderr.write(`proxycheck: ${(err as Error).message}\n`);
      } finally {
        clearTimeout(timer);
      }
    }
  })();
  await stopping;
  stopping = undefined;
}

/**
 * Throws when SIGINT/SIGTERM has arrived: a run that is still going while the cleanup runs must
 * not start anything new, whose stop would no longer be collected.
 */
export function refuseIfStopping(what: string): void {
  if (stopSignal) throw new SetupError(`${what} not started: ${stopSignal} received, stopping`);
}

/** Installs SIGINT/SIGTERM handlers that stop everything, then exit 130/143. */
export function installSignalHandlers(): void {
  if (handlersInstalled) return;
  handlersInstalled = true;
  for (const [sig, code] of [
    ['SIGINT', 130],
    ['SIGTERM', 143],
  ] as const) {
    process.on(sig, () => {
      stopSignal ??= sig;
      process.stderr.write(`proxycheck: ${sig} received, stopping everything we started\n`);
      void cleanupAll().finally(() => process.exit(code));
    });
  }
}
