/** Every exchange kind, by id. One line per kind module. */
import type { ExchangeKindId, ProfileExchange } from '../../scenarios.ts';
import { httpsKind } from './https.ts';
import type { ExchangeKind } from './types.ts';

const KINDS = new Map<ExchangeKindId, ExchangeKind>([[httpsKind.id, httpsKind]]);

export function kindOf(x: ProfileExchange): ExchangeKind {
  const id = x.kind ?? 'https';
  const kind = KINDS.get(id);
  if (!kind) throw new Error(`exchange kind "${id}" is not implemented`);
  return kind;
}

export function registeredKinds(): ExchangeKindId[] {
  return [...KINDS.keys()];
}
