/**
 * A customer's proxy set up by hand (proxy-chain, not one of our adapters), for `validate` tests:
 * it resolves host names with `resolve` (e.g. the lines `proxycheck lab hosts` prints) and, with
 * `auth`, asks for Basic credentials. Closed when the test ends; returns `127.0.0.1:PORT`.
 */
import { Server } from 'proxy-chain';
import type { Test } from 'tap';

export async function customerProxy(
  t: Test,
  resolve: (host: string) => string | undefined,
  auth?: { username: string; password: string },
): Promise<string> {
  const server = new Server({
    port: 0,
    host: '127.0.0.1',
    prepareRequestFunction: ({ username, password }) => {
      if (auth && (username !== auth.username || password !== auth.password)) {
        return { requestAuthentication: true };
      }
      return {
        dnsLookup: ((
          host: string,
          o: { all?: boolean },
          cb: (e: Error | null, a?: unknown, f?: number) => void,
        ) => {
          const a = resolve(host);
          if (!a) cb(Object.assign(new Error(`ENOTFOUND ${host}`), { code: 'ENOTFOUND' }));
          else if (o?.all) cb(null, [{ address: a, family: 4 }]);
          else cb(null, a, 4);
        }) as never,
      };
    },
  });
  await server.listen();
  t.teardown(() => server.close(true));
  return `127.0.0.1:${server.port}`;
}
