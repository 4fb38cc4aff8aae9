/**
 * `ws-session`: the long-lived WebSocket sessions of the `websocket` kind on https origins, every
 * path under `/ws/` (`/ws/session` for FlexxAgent remote assistance, `/ws/liveshell`, ...). Every
 * binary message the agent sends is one upstream burst: the origin answers with a text ack that
 * states what it received (bytes, SHA-256) and declares a downstream burst of the same size, then
 * sends that burst as one binary message. Pings are answered by ws itself. The agent can thus hash
 * both directions independently over one long-lived session.
 */
import { createHash, randomBytes } from 'node:crypto';
import { WebSocketServer } from 'ws';
import type { LabService, LabServiceFactory } from './types.ts';
import { acceptUpgrade, closeWebSockets } from './ws.ts';

/** Paths this service answers (echo keeps the bare `/ws`). */
export const SESSION_PATH_PREFIX = '/ws/';
export const SESSION_SUBPROTOCOL = 'proxycheck-session.v1';

/** The text ack the origin sends for each upstream burst, right before the downstream burst. */
export interface SessionAck {
  op: 'burst';
  /** 1-based number of the upstream burst on this session. */
  seq: number;
  upBytes: number;
  upSha256: string;
  downBytes: number;
  downSha256: string;
}

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

export const wsSessionService: LabServiceFactory = (): LabService => {
  const wss = new WebSocketServer({
    noServer: true,
    maxPayload: 64 * 1024 * 1024,
    perMessageDeflate: false,
    handleProtocols: (offered) => (offered.has(SESSION_SUBPROTOCOL) ? SESSION_SUBPROTOCOL : false),
  });
  wss.on('connection', (ws) => {
    let seq = 0;
    ws.on('message', (data: Buffer, isBinary) => {
      if (!isBinary) return; // the agent only sends bursts; text is ignored
      seq++;
      const down = randomBytes(data.length);
      const ack: SessionAck = {
        op: 'burst',
        seq,
        upBytes: data.length,
        upSha256: sha(data),
        downBytes: down.length,
        downSha256: sha(down),
      };
      ws.send(JSON.stringify(ack));
      ws.send(down, { binary: true });
    });
    ws.on('error', () => ws.terminate());
  });
  return {
    name: 'ws-session',
    upgradePaths: [SESSION_PATH_PREFIX],
    upgrade(req, socket, head) {
      acceptUpgrade(wss, req, socket, head);
    },
    async close() {
      await closeWebSockets(wss);
    },
  };
};
