/**
 * TLS to an HTTPS proxy (ProxyAddress.tls): the proxy's certificate checked against the given CA
 * for its name (sent as SNI when it is a name, not an address), and no ALPN offered, so never h2.
 */
import net, { type Socket } from 'node:net';
import tls from 'node:tls';

export interface ProxyTls {
  /** PEM certificates the proxy's must chain to (absent: Node's public roots). */
  ca?: string[];
  servername?: string;
}

/** Starts TLS to the proxy at `address:port` (the connection and handshake run on their own). */
export function dialProxyTls(address: string, port: number, proxyHost: string, pt: ProxyTls): tls.TLSSocket {
  const name = pt.servername ?? proxyHost;
  return tls.connect({
    host: address,
    port,
    ...(pt.ca ? { ca: pt.ca } : {}),
    ...(net.isIP(name) ? {} : { servername: name }),
    checkServerIdentity: (_h, cert) => tls.checkServerIdentity(name, cert),
  });
}

/**
 * TLS to the proxy with a deadline over connection and handshake: the socket once the proxy's
 * certificate was accepted; else `{ error, code, timedOut }` (an untrusted certificate or a name
 * mismatch in words, with Node's code, e.g. UNABLE_TO_VERIFY_LEAF_SIGNATURE, ERR_TLS_CERT_ALTNAME_INVALID).
 */
export function connectProxyTls(
  address: string,
  port: number,
  proxyHost: string,
  pt: ProxyTls,
  deadlineMs: number,
): Promise<{ socket: Socket } | { error: string; code: string; timedOut: boolean }> {
  return new Promise((resolve) => {
    const socket = dialProxyTls(address, port, proxyHost, pt);
    const timer = setTimeout(() => {
      socket.destroy();
      resolve({ error: `no TLS handshake within ${deadlineMs} ms`, code: 'PC_DEADLINE', timedOut: true });
    }, deadlineMs);
    socket.once('secureConnect', () => {
      clearTimeout(timer);
      socket.removeAllListeners('error');
      socket.on('error', () => {});
      resolve({ socket });
    });
    socket.once('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      socket.destroy();
      resolve({
        error: `TLS to the proxy (${pt.servername ?? proxyHost}): ${err.message}`,
        code: err.code ?? 'TLS',
        timedOut: false,
      });
    });
  });
}
