/** The profiles a run selects, and the lab hosts (with their ports and services) they talk to. */
import { kindOf } from '../agent/kinds/index.ts';
import { UsageError } from '../errors.ts';
import type { LabHostSpec, LabPortSpec } from '../lab/lab.ts';
import { catalogRow, type Profile, resolveHost, type ScenarioSet } from '../scenarios.ts';

export function selectProfiles(set: ScenarioSet, ids: string[]): Profile[] {
  if (ids.length === 1 && ids[0] === 'all') return [...set.profiles.values()];
  return ids.map((id) => {
    const p = set.profiles.get(id);
    if (!p)
      throw new UsageError(`unknown profile "${id}" (known: ${[...set.profiles.keys()].join(', ')}, all)`);
    return p;
  });
}

/** The lab hosts (with their ports and what each serves) that the selected profiles talk to. */
export function labHostsFor(set: ScenarioSet, profiles: Profile[]): LabHostSpec[] {
  const hosts = new Map<string, LabHostSpec>();
  for (const p of profiles) {
    for (const x of p.exchanges) {
      const host = resolveHost(x.host, set);
      const spec = hosts.get(host) ?? { host, ports: [] };
      // the failover port serves what the primary serves
      const ports = [x.port, ...(x.failover && x.failover.port !== x.port ? [x.failover.port] : [])];
      for (const port of ports) {
        for (const want of kindOf(x).lab({ ...x, port }, catalogRow(set, { ...x, port }))) {
          const have = spec.ports.find((q) => q.port === want.port);
          if (!have) spec.ports.push(want);
          else if (
            have.transport !== want.transport ||
            have.service !== want.service ||
            !!have.mtls !== !!want.mtls
          ) {
            throw new UsageError(
              `profile ${p.id}: ${host}:${want.port} is served as ${describePort(have)} for another exchange and cannot also be ${describePort(want)}`,
            );
          }
        }
      }
      hosts.set(host, spec);
    }
  }
  return [...hosts.values()];
}

function describePort(p: LabPortSpec): string {
  return `${p.transport}${p.service ? `/${p.service}` : ''}${p.mtls ? '+mtls' : ''}`;
}
