/**
 * The skeleton the raw test proxies share (refusing, sloppy, TLS-cutting, killing, forwarding): a
 * `net` server on 127.0.0.1 with a free port whose sockets are tracked so stop() can destroy them,
 * an upstream dial to a lab address, and the reading of a request head. Each proxy keeps only what
 * makes it misbehave.
 */
import net, { type Socket } from 'node:net';
import type { ProxyCredentials, StartedProxy } from '../../harness/proxies/types.ts';

/** What a proxy's connection handler gets besides the client socket (already tracked). */
export interface RawConnection {
  /** Connects to `host:port`; stop() destroys it too; an upstream error destroys the client. */
  dial(host: string, port: number, onConnect: () => void): Socket;
}

export interface RawProxyOptions {
  /** Announced with the started proxy (the proxy does not check them). */
  credentials?: ProxyCredentials;
  /** Runs first in stop(), before the sockets are destroyed (e.g. to clear timers). */
  onStop?: () => void;
}

/** Starts a `plain`, in-process proxy on 127.0.0.1 that hands every accepted client to `onConnection`. */
export async function startRawProxy(
  id: string,
  onConnection: (client: Socket, raw: RawConnection) => void,
  opts: RawProxyOptions = {},
): Promise<StartedProxy> {
  const sockets = new Set<Socket>();
  // stop() destroys what is tracked; errors are swallowed (an errored socket closes anyway)
  const track = (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => {});
  };
  const server = net.createServer((client) => {
    track(client);
    onConnection(client, {
      dial: (host, port, onConnect) => {
        const upstream = net.connect({ host, port }, onConnect);
        track(upstream);
        upstream.on('error', () => client.destroy());
        return upstream;
      },
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  return localProxy(
    id,
    port,
    async () => {
      opts.onStop?.();
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
    { credentials: opts.credentials },
  );
}

/** The record of a `plain`, in-process proxy at 127.0.0.1:`port` (version `test` unless given). */
export function localProxy(
  id: string,
  port: number,
  stop: () => Promise<void>,
  more: { version?: string; credentials?: ProxyCredentials } = {},
): StartedProxy {
  return {
    id,
    kind: 'plain',
    runtime: 'in-process',
    version: more.version ?? 'test',
    url: `http://127.0.0.1:${port}`,
    host: '127.0.0.1',
    port,
    ...(more.credentials ? { credentials: more.credentials } : {}),
    startMs: 0,
    stop,
  };
}

/**
 * Collects the client's bytes up to the blank line ending the request head, then stops reading
 * (the client is left paused) and calls `onHead` with the head, blank line included, as latin1 text
 * and the bytes that came after it.
 */
export function readHead(client: Socket, onHead: (head: string, rest: Buffer) => void): void {
  let buf = Buffer.alloc(0);
  const onData = (chunk: Buffer) => {
    buf = Buffer.concat([buf, chunk]);
    const end = buf.indexOf('\r\n\r\n');
    if (end < 0) return;
    client.off('data', onData);
    client.pause();
    onHead(buf.subarray(0, end + 4).toString('latin1'), buf.subarray(end + 4));
  };
  client.on('data', onData);
}

/**
 * The target of a `CONNECT host:port HTTP/1.1` request line at the start of `text` (`HTTP/1.0` too
 * with `http10`), or undefined.
 */
export function parseConnect(text: string, http10 = false): { host: string; port: string } | undefined {
  const m = (
    http10 ? /^CONNECT ([^:\s]+):(\d+) HTTP\/1\.[01]\r\n/ : /^CONNECT ([^:\s]+):(\d+) HTTP\/1\.1\r\n/
  ).exec(text);
  return m ? { host: m[1] ?? '', port: m[2] ?? '' } : undefined;
}
