/**
 * A proxy behind a relay (relay.ts): the relay's port is the proxy's address, so every connection
 * gets the definition's path faults (and, for squid, its tunnel lifetime), and a flow log if asked.
 *
 * `diesAfterSeconds` N: the proxy "crashes" N real seconds after it started (counted from the
 * moment the relay listens, just before start() returns): every connection through the relay is
 * reset both ways (RST: the agent reads ECONNRESET) and the relay's listener closes, so later
 * connects are refused (ECONNREFUSED). The inner engine keeps running until stop(); `onDeath`
 * hears when it happened.
 */

import type { PathFaults } from './definition.ts';
import { type Flow, startRelay } from './relay.ts';
import type { ProxyContext, ProxyUnderTest, StartedProxy } from './types.ts';

export interface RelayFrontOptions {
  faults?: PathFaults;
  lifetimeSeconds?: number;
  onFlow?: (flow: Flow) => void;
  /** Where the relay listens (default 127.0.0.1, port 0). */
  listen?: { host?: string; port?: number };
  /** The proxy dies this many seconds after it started (see the top); a positive number. */
  diesAfterSeconds?: number;
  /** Called when the proxy dies (its connections reset, its listener closed), with performance.now() then. */
  onDeath?: (atMs: number) => void;
}

export class RelayFront implements ProxyUnderTest {
  readonly id: string;
  constructor(
    readonly inner: ProxyUnderTest,
    private readonly opts: RelayFrontOptions,
  ) {
    this.id = inner.id;
    const n = opts.diesAfterSeconds;
    if (n !== undefined && !(Number.isFinite(n) && n > 0))
      throw new Error(`${inner.id}: diesAfterSeconds must be a positive number of seconds, not ${n}`);
  }

  describe(): string {
    const f = this.opts.faults ?? {};
    const what = [
      ...Object.entries(f).map(([k, v]) => `${k} ${v}`),
      ...(this.opts.lifetimeSeconds !== undefined ? [`tunnel lifetime ${this.opts.lifetimeSeconds} s`] : []),
      ...(this.opts.diesAfterSeconds !== undefined
        ? [`the proxy dies ${this.opts.diesAfterSeconds} s after start (connections reset, then refused)`]
        : []),
    ];
    return what.length
      ? `${this.inner.describe()}, behind a relay: ${what.join(', ')}`
      : this.inner.describe();
  }

  async start(ctx: ProxyContext): Promise<StartedProxy> {
    const t0 = performance.now();
    const inner = await this.inner.start(ctx);
    try {
      const relay = await startRelay({
        target: { host: inner.host, port: inner.port },
        ...(this.opts.faults ? { faults: this.opts.faults } : {}),
        ...(this.opts.lifetimeSeconds !== undefined ? { lifetimeSeconds: this.opts.lifetimeSeconds } : {}),
        ...(this.opts.onFlow ? { onFlow: this.opts.onFlow } : {}),
        ...(this.opts.listen ? { listen: this.opts.listen } : {}),
      });
      const dies = this.opts.diesAfterSeconds;
      const death =
        dies === undefined
          ? undefined
          : setTimeout(() => {
              const atMs = performance.now();
              // the resets and the listener's close happen now; a deadline on the rest is stop()'s to report
              relay.die(`proxy died ${dies} s after start`).catch(() => {});
              this.opts.onDeath?.(atMs);
            }, dies * 1000);
      return {
        ...inner,
        // the relay passes bytes on: an HTTPS proxy's TLS goes through it
        url: inner.tls ? relay.url.replace(/^http:/, 'https:') : relay.url,
        host: relay.host,
        port: relay.port,
        startMs: Math.round(performance.now() - t0),
        stop: async () => {
          clearTimeout(death);
          await relay.stop();
          await inner.stop();
        },
      };
    } catch (err) {
      await inner.stop();
      throw err;
    }
  }
}
