/**
 * `echo`: raw byte echo on tls/tcp origins (Kaspersky and ESET agent ports, which speak their own
 * binary protocols), and the `/ws` WebSocket echo on https origins.
 */
import type { Duplex } from 'node:stream';
import { WebSocketServer } from 'ws';
import type { LabService, LabServiceFactory } from './types.ts';
import { acceptUpgrade, closeWebSockets } from './ws.ts';

export const echoService: LabServiceFactory = (): LabService => {
  const wss = new WebSocketServer({ noServer: true, maxPayload: 64 * 1024 * 1024 });
  wss.on('connection', (ws) => {
    ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
    ws.on('ping', () => {}); // ws answers pings itself
    ws.on('error', () => ws.terminate());
  });
  const streams = new Set<Duplex>();
  return {
    name: 'echo',
    stream(socket) {
      streams.add(socket);
      socket.on('close', () => streams.delete(socket));
      socket.on('error', () => socket.destroy());
      socket.pipe(socket);
    },
    upgradePaths: ['/ws'],
    upgrade(req, socket, head) {
      acceptUpgrade(wss, req, socket, head);
    },
    async close() {
      for (const s of streams) s.destroy();
      await closeWebSockets(wss);
    },
  };
};
