/**
 * Ports for the proxies we start. An in-process server listens on port 0 itself and reads its
 * port back (chain.ts: proxy-chain's `port: 0`), which cannot race. A program that must be told
 * its port before it binds it (squid reads it from squid.conf) gets a number from `pickPort()`,
 * which can race: between our close and its bind another process can take the port. The program
 * then fails to bind, and `withPortRetry()` starts it again on a new port, a bounded number of
 * times.
 */
import { createServer } from 'node:net';
import { errorMessage, SetupError } from '../../errors.ts';

/**
 * A port that was free a moment ago: listen(0) on `host`, read the port, close. Only for programs
 * that must be told their port; pair with `withPortRetry()`.
 */
export async function pickPort(host = '127.0.0.1'): Promise<number> {
  return await new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, host, () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

/**
 * What a program says when its listening address is taken: squid 5 logs
 * `commBind Cannot bind socket FD 11 to 127.0.0.1:40123: (98) Address already in use` (then
 * `FATAL: Unable to open HTTP Socket`, exit 1); Node says EADDRINUSE.
 */
export const ADDRESS_IN_USE = /Address already in use|EADDRINUSE/;

/** How many ports a start may try before it gives up. */
export const PORT_ATTEMPTS = 3;

export interface PortRetry<T> {
  /** Starts the program on `port`; `attempt` counts from 1. */
  start(port: number, attempt: number): Promise<T>;
  /** True when `start` failed because the port was taken: then another port is tried. */
  portTaken(err: unknown): boolean;
  /** Where ports come from (default `pickPort`; tests hand out a taken one). */
  pick?: () => Promise<number>;
  attempts?: number;
}

/**
 * Runs `start` on a picked port; when it fails because the port was taken, again on a new port,
 * up to `attempts` times. Any other failure is thrown as it is. When every attempt found its port
 * taken, the last error is thrown as a SetupError whose message adds the ports tried (evidence:
 * the last attempt's, plus `ports`).
 */
export async function withPortRetry<T>(o: PortRetry<T>): Promise<T> {
  const attempts = o.attempts ?? PORT_ATTEMPTS;
  const pick = o.pick ?? (() => pickPort());
  const ports: number[] = [];
  for (let attempt = 1; ; attempt++) {
    const port = await pick();
    ports.push(port);
    try {
      return await o.start(port, attempt);
    } catch (err) {
      if (!o.portTaken(err)) throw err;
      if (attempt >= attempts) {
        const tried = `address in use on each of ${attempts} attempts: ports ${ports.join(', ')}`;
        const evidence = err instanceof SetupError ? err.evidence : {};
        throw new SetupError(`${errorMessage(err)} (${tried})`, { ...evidence, ports }, { cause: err });
      }
    }
  }
}
