/**
 * A proxy script served over HTTP for the validate tests (WPAD's wpad.dat, a PAC URL), and a
 * probe for whether anything still listens once a test is done.
 */
import http from 'node:http';
import net from 'node:net';
import type { Test } from 'tap';

/** An HTTP server on `host:port` answering `files` (path → body), 404 otherwise; closed when `t` ends. */
export async function scriptServer(
  t: Test,
  host: string,
  port: number,
  files: Record<string, string>,
): Promise<{ port: number; close(): Promise<void> }> {
  const server = http.createServer((req, res) => {
    const body = files[req.url ?? ''];
    res.writeHead(body === undefined ? 404 : 200, {
      'content-type': body === undefined ? 'text/plain' : 'application/x-ns-proxy-autoconfig',
      connection: 'close',
    });
    res.end(body ?? 'not found\n');
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  let closed: Promise<void> | undefined;
  const close = () => {
    closed ??= new Promise<void>((r) => {
      server.closeAllConnections();
      server.close(() => r());
    });
    return closed;
  };
  t.teardown(close);
  return { port: (server.address() as net.AddressInfo).port, close };
}

/** Does anything accept a connection on host:port? */
export function listening(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host, port });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}
