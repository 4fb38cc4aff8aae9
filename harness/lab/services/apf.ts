/**
 * `apf`: the lab's CIRA server, speaking the Intel AMT Port Forwarding protocol (APF) to AMT
 * firmware inside mutual TLS. The wire format, shared with the agent's side, is in apf-codec.ts.
 *
 * The lab origin answers a faithful subset: the firmware's PROTOCOLVERSION (answered with the
 * server's own), SERVICE_REQUEST for auth@amt.intel.com and pfwd@amt.intel.com, a password
 * USERAUTH_REQUEST (any credentials: the lab checks the device certificate, not passwords), the
 * tcpip-forward GLOBAL_REQUEST, and KEEPALIVE_REQUEST/REPLY with a 4-byte cookie. Anything else
 * gets DISCONNECT (protocol error) before the origin closes; the origin never closes silently, so
 * a tunnel that dies without an APF DISCONNECT was closed by something on the path.
 *
 * One lab-only message (ORIGIN_INFO, type 240, not part of APF) follows the version reply: a
 * JSON string naming the lab and the client certificate CN the TLS server verified (mutual TLS
 * against the lab device CA), so the agent can tell its device certificate really reached the
 * origin.
 */
import type { Duplex } from 'node:stream';
import {
  APF_AUTH_SERVICE,
  APF_DISCONNECT,
  APF_PFWD_SERVICE,
  type ApfMessage,
  decodeApf,
  encodeApf,
} from './apf-codec.ts';
import type { LabService, LabServiceFactory, StreamInfo } from './types.ts';

/** One CIRA connection as the lab's CIRA server sees it. */
function serveApf(socket: Duplex, info: StreamInfo): void {
  let buf = Buffer.alloc(0);
  let versionSeen = false;
  const accepted = new Set<string>();
  let closing = false;
  const send = (m: ApfMessage) => {
    if (!closing && socket.writable) socket.write(encodeApf(m));
  };
  const disconnect = (reason: number) => {
    send({ type: 'disconnect', reason });
    closing = true;
    socket.end();
  };
  socket.on('error', () => socket.destroy());
  socket.on('data', (chunk: Buffer) => {
    if (closing) return;
    buf = Buffer.concat([buf, chunk]);
    for (;;) {
      let decoded: ReturnType<typeof decodeApf>;
      try {
        decoded = decodeApf(buf);
      } catch {
        disconnect(APF_DISCONNECT.PROTOCOL_ERROR);
        return;
      }
      if (!decoded) return;
      buf = buf.subarray(decoded.bytes);
      const m = decoded.message;
      if (!versionSeen && m.type !== 'protocol-version') {
        disconnect(APF_DISCONNECT.PROTOCOL_ERROR);
        return;
      }
      switch (m.type) {
        case 'protocol-version':
          if (m.major !== 1) {
            disconnect(APF_DISCONNECT.PROTOCOL_VERSION_NOT_SUPPORTED);
            return;
          }
          versionSeen = true;
          send({
            type: 'protocol-version',
            major: 1,
            minor: 0,
            triggerReason: m.triggerReason,
            uuid: Buffer.alloc(16),
          });
          send({
            type: 'origin-info',
            info: {
              labId: info.labId,
              host: info.host,
              port: info.port,
              ...(info.clientCertCN ? { clientCertCN: info.clientCertCN } : {}),
            },
          });
          break;
        case 'service-request':
          if (m.service !== APF_AUTH_SERVICE && m.service !== APF_PFWD_SERVICE) {
            disconnect(APF_DISCONNECT.SERVICE_NOT_AVAILABLE);
            return;
          }
          accepted.add(m.service);
          send({ type: 'service-accept', service: m.service });
          break;
        case 'userauth-request':
          if (!accepted.has(APF_AUTH_SERVICE) || m.method !== 'password')
            send({ type: 'userauth-failure', methods: 'password', partial: false });
          else send({ type: 'userauth-success' });
          break;
        case 'global-request':
          if (!m.wantReply) break;
          if (m.name === 'tcpip-forward' && accepted.has(APF_PFWD_SERVICE))
            send({ type: 'request-success', port: m.port ?? 0 });
          else if (m.name === 'cancel-tcpip-forward') send({ type: 'request-success' });
          else send({ type: 'request-failure' });
          break;
        case 'keepalive-request':
          send({ type: 'keepalive-reply', cookie: m.cookie });
          break;
        case 'keepalive-reply':
        case 'keepalive-options-reply':
          break;
        case 'disconnect':
          closing = true;
          socket.end();
          return;
        default:
          disconnect(APF_DISCONNECT.PROTOCOL_ERROR);
          return;
      }
    }
  });
}

export const apfService: LabServiceFactory = (): LabService => {
  const streams = new Set<Duplex>();
  return {
    name: 'apf',
    stream(socket, info) {
      streams.add(socket);
      socket.on('close', () => streams.delete(socket));
      serveApf(socket, info);
    },
    async close() {
      for (const s of streams) s.destroy();
      streams.clear();
    },
  };
};
