import { SetupError } from '../../harness/errors.ts';
import type { ProxyCredentials, ProxyUnderTest, StartedProxy } from '../../harness/proxies/types.ts';

/** Starts `inner` but hands the agent other credentials (a wrong password, say). */
export function withCredentials(
  inner: ProxyUnderTest,
  id: string,
  credentials: ProxyCredentials,
): ProxyUnderTest {
  return {
    id,
    describe: () => `${inner.describe()} (agent given other credentials)`,
    start: async (ctx): Promise<StartedProxy> => ({ ...(await inner.start(ctx)), id, credentials }),
  };
}

/** A proxy whose start fails the way our own setup can fail. */
export function brokenProxy(id: string): ProxyUnderTest {
  return {
    id,
    describe: () => 'a proxy that cannot start',
    start: async () => {
      throw new SetupError('squid exited during start-up', { log: 'FATAL: Bungled squid.conf line 3' });
    },
  };
}
