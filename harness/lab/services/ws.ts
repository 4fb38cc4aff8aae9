/** What every lab service with WebSocket routes does with its WebSocketServer (noServer mode). */
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { WebSocketServer } from 'ws';

/** Completes the upgrade and hands the socket to `wss` as its 'connection' event. */
export function acceptUpgrade(
  wss: WebSocketServer,
  req: IncomingMessage,
  socket: Duplex,
  head: Buffer,
): void {
  wss.handleUpgrade(req, socket, head, (ws) => wss.emit('connection', ws, req));
}

/** Terminates every client and closes `wss`. */
export async function closeWebSockets(wss: WebSocketServer): Promise<void> {
  for (const ws of wss.clients) ws.terminate();
  await new Promise<void>((resolve) => wss.close(() => resolve()));
}
