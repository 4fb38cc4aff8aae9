/**
 * A definition made real: its engine configured from its knobs, and, for path faults (and a
 * tunnel lifetime on squid, which has no such timer), a relay in front of it (relay.ts).
 */
import type { ScenarioSet } from '../scenarios.ts';
import { ChainProxy } from './chain.ts';
import { DEFAULT_HEADERS, describeDefinition, type ProxyDefinition } from './definition.ts';
import { resolveDefinition } from './oracle.ts';
import { RelayFront } from './relay-front.ts';
import { SquidProxy } from './squid/squid.ts';
import type { Runtime } from './toolkit/runtime.ts';
import type { ProxyUnderTest } from './types.ts';

export function engineFor(
  def: ProxyDefinition & { file: string },
  set: ScenarioSet,
  runtime: Runtime = 'auto',
): ProxyUnderTest {
  const { allowed, inspectHosts } = resolveDefinition(def, set);
  const mode = def.inspection?.mode ?? 'none';
  const hosts = [...inspectHosts];
  const base = { id: def.id, summary: def.summary ?? describeDefinition(def) };
  const caSubject = def.inspection?.caSubject;
  let engine: ProxyUnderTest;
  // squid has no timer that cuts a tunnel at a fixed age: the relay in front does it
  let relayLifetime: number | undefined;
  if (def.engine === 'chain') {
    engine = new ChainProxy({
      ...base,
      auth: def.auth === 'basic',
      inspection: { mode, hosts },
      ...(caSubject ? { caSubject } : {}),
      ...(allowed ? { connectPorts: [...allowed] } : {}),
      ...(def.idleTimeoutSeconds !== undefined ? { idleTimeoutSeconds: def.idleTimeoutSeconds } : {}),
      ...(def.lifetimeSeconds !== undefined ? { lifetimeSeconds: def.lifetimeSeconds } : {}),
      ...(def.headers ? { headers: def.headers } : {}),
      ...(def.connectAnswer ? { connectAnswer: def.connectAnswer } : {}),
    });
  } else {
    const headers = { ...DEFAULT_HEADERS.squid, ...def.headers };
    engine = new SquidProxy({
      ...base,
      runtime: runtime !== 'auto' ? runtime : (def.runtime ?? 'auto'),
      ...(caSubject ? { caSubject } : {}),
      policy: {
        connectPorts: allowed ? [...allowed].sort((a, b) => a - b) : 'any',
        auth: def.auth ?? 'none',
        inspection: { mode, hosts },
        ...(def.idleTimeoutSeconds !== undefined ? { idleTimeoutSeconds: def.idleTimeoutSeconds } : {}),
        via: headers.via,
        xForwardedFor: headers.xForwardedFor,
      },
    });
    relayLifetime = def.lifetimeSeconds;
  }
  const faults = def.faults && Object.keys(def.faults).length ? def.faults : undefined;
  if (!faults && relayLifetime === undefined) return engine;
  return new RelayFront(engine, {
    ...(faults ? { faults } : {}),
    ...(relayLifetime !== undefined ? { lifetimeSeconds: relayLifetime } : {}),
  });
}
