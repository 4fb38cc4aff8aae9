/**
 * A proxy behind a relay (relay.ts): the relay's port is the proxy's address, so every connection
 * gets the definition's path faults (and, for squid, its tunnel lifetime), and a flow log if asked.
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
}

export class RelayFront implements ProxyUnderTest {
  readonly id: string;
  constructor(
    readonly inner: ProxyUnderTest,
    private readonly opts: RelayFrontOptions,
  ) {
    this.id = inner.id;
  }

  describe(): string {
    const f = this.opts.faults ?? {};
    const what = [
      ...Object.entries(f).map(([k, v]) => `${k} ${v}`),
      ...(this.opts.lifetimeSeconds !== undefined ? [`tunnel lifetime ${this.opts.lifetimeSeconds} s`] : []),
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
      return {
        ...inner,
        url: relay.url,
        host: relay.host,
        port: relay.port,
        startMs: Math.round(performance.now() - t0),
        stop: async () => {
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
