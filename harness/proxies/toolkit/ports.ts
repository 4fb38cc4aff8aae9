/**
 * Ports for the proxies we start. An in-process server listens on port 0 itself and reads its
 * port back (chain.ts: proxy-chain's `port: 0`), which cannot race. A program that must be told
 * its port before it binds it (squid reads it from squid.conf) gets a number from `pickPort()`,
 * which can race: between our close and its bind another process can take the port.
 */
import { createServer } from 'node:net';

/**
 * A port that was free a moment ago: listen(0) on `host`, read the port, close. Only for programs
 * that must be told their port.
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
