/** Every exchange kind, by id. One line per kind module. */
import type { ExchangeKindId, ProfileExchange } from '../../scenarios.ts';
import { amqpWsKind } from './amqp-ws.ts';
import { ciraKind } from './cira.ts';
import { httpForwardKind } from './http-forward.ts';
import { httpsKind } from './https.ts';
import { mqttKind } from './mqtt.ts';
import { mqttWsKind } from './mqtt-ws.ts';
import { tcpStreamKind, tlsStreamKind } from './stream.ts';
import type { ExchangeKind } from './types.ts';
import { websocketKind } from './websocket.ts';

const KINDS = new Map<ExchangeKindId, ExchangeKind>(
  [
    httpsKind,
    httpForwardKind,
    tlsStreamKind,
    tcpStreamKind,
    mqttWsKind,
    mqttKind,
    ciraKind,
    websocketKind,
    amqpWsKind,
  ].map((k) => [k.id, k]),
);

export function kindOf(x: ProfileExchange): ExchangeKind {
  const id = x.kind ?? 'https';
  const kind = KINDS.get(id);
  if (!kind) throw new Error(`exchange kind "${id}" is not implemented`);
  return kind;
}

export function registeredKinds(): ExchangeKindId[] {
  return [...KINDS.keys()];
}
