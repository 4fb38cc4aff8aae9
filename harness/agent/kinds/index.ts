/**
 * Every exchange kind, by id: one line per kind module. A kind declares its id, its option schema
 * and its lab service in its own module; the profile schema is keyed on the kind through
 * exchangeProblem(), so an option a kind does not take is a scenario error.
 */
import { Ajv, type ValidateFunction } from 'ajv';
import { probeKind } from '../../live/probe.ts';
import type { ProfileExchange } from '../../scenarios.ts';
import { amqpWsKind } from './amqp-ws.ts';
import { ciraKind } from './cira.ts';
import { httpForwardKind } from './http-forward.ts';
import { httpsKind } from './https.ts';
import { mqttKind } from './mqtt.ts';
import { mqttWsKind } from './mqtt-ws.ts';
import { tcpStreamKind, tlsStreamKind } from './stream.ts';
import type { ExchangeKind } from './types.ts';
import { websocketKind } from './websocket.ts';

const KINDS = new Map<string, ExchangeKind>(
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
    probeKind,
  ].map((k) => [k.id, k]),
);

export const DEFAULT_KIND = 'https';

export function kindOf(x: Pick<ProfileExchange, 'kind'>): ExchangeKind {
  const id = x.kind ?? DEFAULT_KIND;
  const kind = KINDS.get(id);
  if (!kind) throw new Error(`exchange kind "${id}" is not implemented`);
  return kind;
}

export function registeredKinds(): string[] {
  return [...KINDS.keys()];
}

/** Registers a kind defined elsewhere (tests, extensions); returns its removal. */
export function registerKind(kind: ExchangeKind): () => void {
  if (KINDS.has(kind.id)) throw new Error(`exchange kind ${kind.id} is already registered`);
  KINDS.set(kind.id, kind);
  validators.delete(kind.id);
  return () => {
    KINDS.delete(kind.id);
    validators.delete(kind.id);
  };
}

/** Options every exchange may have, whatever its kind. */
const COMMON: Record<string, object> = {
  kind: { type: 'string' },
  catalog: { type: 'string' },
  host: { type: 'string' },
  port: { type: 'integer', minimum: 1, maximum: 65535 },
  name: { type: 'string' },
  userAgent: { type: 'string' },
  instances: { type: 'integer', minimum: 1, maximum: 1000 },
};

const ajv = new Ajv({ allErrors: false, strict: false });
const validators = new Map<string, ValidateFunction>();

/**
 * What is wrong with one exchange for its kind (`undefined` when nothing): an unknown kind, an
 * option the kind does not take, a missing or malformed option. `defs` are the profile schema's
 * shared definitions (requests, session, ...).
 */
export function exchangeProblem(
  x: Record<string, unknown>,
  defs: Record<string, unknown>,
): string | undefined {
  const id = typeof x.kind === 'string' ? x.kind : DEFAULT_KIND;
  const kind = KINDS.get(id);
  if (!kind) return `/kind "${id}" is not an exchange kind (known: ${registeredKinds().join(', ')})`;
  let v = validators.get(id);
  if (!v) {
    v = ajv.compile({
      $defs: defs,
      type: 'object',
      required: ['catalog', 'host', 'port', ...(kind.required ?? [])],
      additionalProperties: false,
      properties: { ...COMMON, ...kind.options },
    });
    validators.set(id, v);
  }
  if (v(x)) return undefined;
  const e = v.errors?.[0];
  if (!e) return 'invalid';
  if (e.keyword === 'additionalProperties') {
    const extra = (e.params as { additionalProperty: string }).additionalProperty;
    return `/${extra} is not an option of exchange kind ${id} (it takes: ${Object.keys(kind.options).join(', ') || 'none beyond the common ones'})`;
  }
  return `${e.instancePath || '/'} ${e.message ?? 'is invalid'} (${id} exchange)`;
}
