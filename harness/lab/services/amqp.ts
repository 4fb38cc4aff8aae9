/**
 * `amqp`: an AMQP 1.0 broker endpoint over WebSocket, the way Azure Service Bus is reached
 * (`/$servicebus/websocket`, subprotocol `AMQPWSB10`). A rhea container accepts the upgraded
 * WebSocket (SASL ANONYMOUS or none), and echoes: every message a client sends on a link to
 * address A comes back on the client's receiving link from address A on the same connection, body
 * untouched, with the SHA-256 of the body the broker received in the application property
 * `x-proxycheck-received-sha256` (so the agent can tell the upstream from the downstream).
 */
import { createHash } from 'node:crypto';
import rhea, { type Connection, type EventContext, type Message, type Sender } from 'rhea';
import { WebSocketServer } from 'ws';
import type { LabService, LabServiceFactory } from './types.ts';
import { acceptUpgrade, closeWebSockets } from './ws.ts';

export const AMQP_WS_PATH = '/$servicebus/websocket';
export const AMQP_WS_SUBPROTOCOL = 'AMQPWSB10';
export const RECEIVED_SHA_PROPERTY = 'x-proxycheck-received-sha256';

/** The bytes of a message body (data section, binary value or string), as the broker got them. */
export function bodyBytes(body: unknown): Buffer | undefined {
  const b = body as { typecode?: number; content?: unknown } | Buffer | string | undefined;
  if (Buffer.isBuffer(b)) return b;
  if (typeof b === 'string') return Buffer.from(b, 'utf8');
  if (b && typeof b === 'object' && 'typecode' in b && Buffer.isBuffer(b.content)) return b.content;
  return undefined;
}

interface Pending {
  address: string;
  message: Message;
}

export const amqpService: LabServiceFactory = (lab): LabService => {
  const container = rhea.create_container({ id: `proxycheck-lab-servicebus-${lab.id}` });
  const pending = new WeakMap<Connection, Pending[]>();

  // rhea keeps the peer's attach frame on `remote` (not in its typings).
  const remoteAttach = (link: unknown) =>
    (link as { remote?: { attach?: { source?: { address?: string }; target?: { address?: string } } } })
      ?.remote?.attach;
  const senderFor = (connection: Connection, address: string): Sender | undefined =>
    connection.find_sender((s: Sender) => remoteAttach(s)?.source?.address === address);

  function flush(connection: Connection): void {
    const queue = pending.get(connection);
    if (!queue) return;
    while (queue.length) {
      const next = queue[0] as Pending;
      const sender = senderFor(connection, next.address);
      if (!sender?.sendable()) return;
      sender.send(next.message);
      queue.shift();
    }
  }

  container.on('message', (ctx: EventContext) => {
    const connection = ctx.connection;
    const address = String(remoteAttach(ctx.receiver)?.target?.address ?? '');
    const msg = ctx.message as Message;
    const body = bodyBytes(msg.body);
    const reply: Message = {
      body: msg.body,
      ...(msg.message_id !== undefined ? { message_id: msg.message_id } : {}),
      ...(msg.correlation_id !== undefined ? { correlation_id: msg.correlation_id } : {}),
      application_properties: {
        ...(msg.application_properties ?? {}),
        [RECEIVED_SHA_PROPERTY]: body ? createHash('sha256').update(body).digest('hex') : '',
      },
    };
    const queue = pending.get(connection) ?? [];
    pending.set(connection, queue);
    queue.push({ address, message: reply });
    flush(connection);
  });
  container.on('sendable', (ctx: EventContext) => flush(ctx.connection));
  container.on('sender_open', (ctx: EventContext) => flush(ctx.connection));
  // A client that goes away (or a proxy that cuts it off) is routine here: no console noise.
  for (const event of ['disconnected', 'error', 'connection_error', 'protocol_error']) {
    container.on(event, () => {});
  }

  const wss = new WebSocketServer({
    noServer: true,
    maxPayload: 64 * 1024 * 1024,
    perMessageDeflate: false,
    handleProtocols: (offered) => (offered.has(AMQP_WS_SUBPROTOCOL) ? AMQP_WS_SUBPROTOCOL : false),
  });
  wss.on('connection', (ws) => {
    ws.on('error', () => ws.terminate());
    container.websocket_accept(ws as never, {} as never);
  });
  return {
    name: 'amqp',
    upgradePaths: [AMQP_WS_PATH],
    upgrade(req, socket, head) {
      acceptUpgrade(wss, req, socket, head);
    },
    async close() {
      await closeWebSockets(wss);
    },
  };
};
