/**
 * What one simulated agent of a profile does under load: its steady traffic as the seeds describe it
 * (000/001 "Bandwidth usage"), taken from the profile's exchanges by rule:
 *  - an Analyzer-style session (`session.uploadEverySeconds`): its first upload, then one upload of
 *    `session.uploadBytes` (in turn) every `uploadEverySeconds`, per instance;
 *  - an https exchange whose first request is a POST (FlexxAgent's reports): the first request (the
 *    ~75 KB initial report), then its other POSTs in turn (the 3-4 KB differentials) every
 *    DIFFERENTIAL_SECONDS: the seeds give no interval for differentials, so this one is ours;
 *  - a `websocket` exchange (remote assistance): a long-lived tunnel held with a keep-alive every
 *    `session.intervalSeconds`;
 *  - a `cira` exchange (vPro): the firmware's tunnel (mutual TLS with a device certificate, APF set
 *    up), held with a KEEPALIVE_REQUEST every `session.keepaliveSeconds`; a device holds one
 *    tunnel, so a profile's further CIRA exchanges (other ports of the same MPS) are variants.
 * Everything else the profile does (downloads, MQTT and AMQP over WebSocket, one-off lookups) is
 * listed as not simulated, with the reason, in the load report.
 */
import { UsageError } from '../errors.ts';
import { type Profile, type ProfileExchange, resolveHost, type ScenarioSet } from '../scenarios.ts';

/** The interval between FlexxAgent's differential reports: not in the seeds (our assumption). */
export const DIFFERENTIAL_SECONDS = 60;

export interface Upload {
  name: string;
  path: string;
  bytes: number;
}

export type SessionPlan =
  | {
      kind: 'reports';
      exchange: string;
      host: string;
      port: number;
      userAgent: string;
      headers: Array<[string, string]>;
      first: Upload;
      /** Sent in turn, one every `everySeconds` (profile time) after the first. */
      repeat: Upload[];
      everySeconds: number;
      /** Where the interval comes from. */
      everySource: string;
    }
  | {
      kind: 'hold';
      exchange: string;
      host: string;
      port: number;
      path: string;
      userAgent: string;
      keepaliveSeconds: number;
    }
  | {
      kind: 'cira';
      exchange: string;
      host: string;
      port: number;
      userAgent: string;
      keepaliveSeconds: number;
    };

export interface AgentModel {
  profile: string;
  sessions: SessionPlan[];
  notSimulated: Array<{ exchange: string; why: string }>;
}

const exchangeName = (x: ProfileExchange) => x.name ?? `${x.kind ?? 'https'} ${x.host}:${x.port}`;

export function agentModel(profile: Profile, set: ScenarioSet): AgentModel {
  const sessions: SessionPlan[] = [];
  const notSimulated: AgentModel['notSimulated'] = [];
  for (const x of profile.exchanges) {
    const kind = x.kind ?? 'https';
    const host = resolveHost(x.host, set);
    const base = {
      exchange: exchangeName(x),
      host,
      port: x.port,
      userAgent: x.userAgent ?? 'proxycheck-load',
    };
    const posts = (x.requests ?? []).filter((r) => r.method === 'POST');
    if (kind === 'https' && x.session?.uploadEverySeconds && posts[0]) {
      const sizes = x.session.uploadBytes ?? [posts[0].bytes ?? 0];
      const plan: SessionPlan = {
        kind: 'reports',
        ...base,
        headers: x.headers ?? [],
        first: { name: posts[0].name, path: posts[0].path, bytes: posts[0].bytes ?? 0 },
        repeat: sizes.map((bytes, i) => ({ name: `upload-${i + 1}`, path: posts[0]?.path ?? '/', bytes })),
        everySeconds: x.session.uploadEverySeconds,
        everySource: 'the profile (seed: uploads every 5 minutes)',
      };
      for (let i = 0; i < (x.instances ?? 1); i++) sessions.push(plan);
    } else if (kind === 'https' && x.requests?.[0]?.method === 'POST' && posts.length > 1) {
      const [first, ...rest] = posts.map((r) => ({ name: r.name, path: r.path, bytes: r.bytes ?? 0 }));
      sessions.push({
        kind: 'reports',
        ...base,
        headers: x.headers ?? [],
        first: first as Upload,
        repeat: rest,
        everySeconds: DIFFERENTIAL_SECONDS,
        everySource: `not in the seeds: proxycheck assumes one differential every ${DIFFERENTIAL_SECONDS} s`,
      });
    } else if (kind === 'websocket' && x.path) {
      sessions.push({
        kind: 'hold',
        ...base,
        path: x.path,
        keepaliveSeconds: x.session?.intervalSeconds ?? 5,
      });
    } else if (kind === 'cira' && !sessions.some((p) => p.kind === 'cira')) {
      sessions.push({ kind: 'cira', ...base, keepaliveSeconds: x.session?.keepaliveSeconds ?? 30 });
    } else if (kind === 'cira') {
      notSimulated.push({ exchange: base.exchange, why: 'a variant: a device holds one CIRA tunnel' });
    } else {
      notSimulated.push({
        exchange: base.exchange,
        why:
          kind === 'https'
            ? 'one-off or download traffic, not part of the steady traffic the seeds describe'
            : `${kind} is not simulated under load yet`,
      });
    }
  }
  return { profile: profile.id, sessions, notSimulated };
}

/** `--mix flexxagent=80,remote-assistance=20`: profile weights (any positive numbers). */
export function parseMix(raw: string, set: ScenarioSet): Array<{ profile: Profile; weight: number }> {
  const out: Array<{ profile: Profile; weight: number }> = [];
  for (const part of raw
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)) {
    const m = /^([\w.-]+)(?:=(\d+(?:\.\d+)?))?$/.exec(part);
    if (!m) throw new UsageError(`--mix: "${part}" is not profile=weight`);
    const profile = set.profiles.get(m[1] as string);
    if (!profile)
      throw new UsageError(
        `--mix: unknown profile "${m[1]}" (known: ${[...set.profiles.keys()].join(', ')})`,
      );
    const weight = m[2] === undefined ? 1 : Number(m[2]);
    if (!(weight > 0)) throw new UsageError(`--mix: weight of ${m[1]} must be above 0`);
    if (!agentModel(profile, set).sessions.length)
      throw new UsageError(`--mix: profile ${m[1]} has no traffic simulated under load`);
    out.push({ profile, weight });
  }
  if (!out.length) throw new UsageError('--mix: no profile given');
  return out;
}

/**
 * How many of `agents` run each profile: proportional to the weights, rounded so the total is
 * exact (largest remainders first).
 */
export function splitAgents(agents: number, mix: Array<{ profile: Profile; weight: number }>): number[] {
  const total = mix.reduce((s, m) => s + m.weight, 0);
  const exact = mix.map((m) => (agents * m.weight) / total);
  const counts = exact.map(Math.floor);
  let left = agents - counts.reduce((s, c) => s + c, 0);
  const order = exact.map((e, i) => ({ i, r: e - Math.floor(e) })).sort((a, b) => b.r - a.r);
  for (const { i } of order) {
    if (left-- <= 0) break;
    counts[i] = (counts[i] ?? 0) + 1;
  }
  return counts;
}
