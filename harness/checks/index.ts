/**
 * Every check, one module each (definition, explain(), dependsOn, remedy; judges where they are
 * shared). A new check is a new module here plus one line in CHECK_LIST; its position in the list
 * is its report order.
 */
import { connect } from './connect.ts';
import { connectResponse } from './connect-response.ts';
import { failover } from './failover.ts';
import { fallback } from './fallback.ts';
import { forward } from './forward.ts';
import { headers } from './headers.ts';
import { mtls } from './mtls.ts';
import { payload } from './payload.ts';
import { pinning } from './pinning.ts';
import { protocol } from './protocol.ts';
import { proxyAuth } from './proxy-auth.ts';
import { tlsInterception } from './tls-interception.ts';
import { tunnelKeepalive } from './tunnel-keepalive.ts';
import type { CheckDefinition } from './types.ts';

export type { CheckContext, CheckDefinition, Dependency, Verdict } from './types.ts';
export { notApplicable, notRun, ROUTE } from './types.ts';

/** In report order. */
const CHECK_LIST: CheckDefinition[] = [
  connect,
  proxyAuth,
  forward,
  connectResponse,
  failover,
  fallback,
  tlsInterception,
  pinning,
  mtls,
  protocol,
  payload,
  headers,
  tunnelKeepalive,
];

export const CHECKS: Readonly<Record<string, CheckDefinition>> = Object.fromEntries(
  CHECK_LIST.map((c) => [c.id, c]),
);

/** Report order of every check (a kind reports a subset). */
export const CHECK_ORDER: readonly string[] = CHECK_LIST.map((c) => c.id);

export function isCheck(id: string): boolean {
  return Object.hasOwn(CHECKS, id);
}

export function checkDefinition(id: string): CheckDefinition {
  const def = CHECKS[id];
  if (!def) throw new Error(`unknown check ${id}`);
  return def;
}

/** Registers a check defined elsewhere (tests, extensions); its id must be new. */
export function registerCheck(def: CheckDefinition): () => void {
  if (isCheck(def.id)) throw new Error(`check ${def.id} is already registered`);
  for (const d of def.dependsOn) {
    for (const id of typeof d === 'string' ? [d] : d.anyOf) {
      if (!isCheck(id)) throw new Error(`check ${def.id} depends on unknown check ${id}`);
    }
  }
  CHECK_LIST.push(def);
  (CHECKS as Record<string, CheckDefinition>)[def.id] = def;
  (CHECK_ORDER as string[]).push(def.id);
  return () => {
    CHECK_LIST.splice(CHECK_LIST.indexOf(def), 1);
    delete (CHECKS as Record<string, CheckDefinition>)[def.id];
    (CHECK_ORDER as string[]).splice(CHECK_ORDER.indexOf(def.id), 1);
  };
}
