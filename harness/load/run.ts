/**
 * `proxycheck load`: N simulated agents through one proxy against the lab, each on its profile's
 * steady schedule (compressed by the time scale), for a duration; or in steps of rising agent
 * counts until a service-level objective breaks. Gives percentiles per phase, errors by class,
 * tunnels dropped, and a capacity verdict.
 */
import { UsageError } from '../errors.ts';
import { Lab } from '../lab/lab.ts';
import { createLabPki } from '../lab/pki.ts';
import { RunDir } from '../lab/rundir.ts';
import { onCleanup } from '../lifecycle.ts';
import { UNREACHABLE } from '../proxies/definition.ts';
import type { ProxyUnderTest, StartedProxy } from '../proxies/types.ts';
import { proxyAuthFor } from '../route/auth.ts';
import { labHostsFor, VERSION } from '../runner/run.ts';
import type { Profile, ScenarioSet } from '../scenarios.ts';
import { type AgentContext, type LoadDeadlines, newCounters, runSession, stopSignal } from './agents.ts';
import { type Percentiles, PHASE_MEANING, type Phase, PhaseRecorder, type Window } from './histograms.ts';
import { type AgentModel, agentModel, splitAgents } from './model.ts';

export const LOAD_SCHEMA = 'proxycheck/load@1';

export interface Slo {
  /** p99 of these phases must stay under their ms. */
  p99: Array<{ phase: Phase; ms: number }>;
  /** Errors per session opened, at most (0.01 = 1 %). */
  maxErrorRate: number;
  /** Held tunnels dropped, at most. */
  maxDrops: number;
}

export const DEFAULT_SLO: Slo = { p99: [{ phase: 'connect', ms: 1000 }], maxErrorRate: 0, maxDrops: 0 };

export interface LoadOptions {
  proxy: ProxyUnderTest;
  scenarios: ScenarioSet;
  mix: Array<{ profile: Profile; weight: number }>;
  /** Agent counts, one step each (one step: a plain run). */
  steps: number[];
  durationSeconds: number;
  rampSeconds: number;
  timeScale: number;
  labNet: number;
  slo: Slo;
  /** The agents trust the proxy's inspection CA. */
  trustInspectionCa?: boolean;
  deadlines?: Partial<LoadDeadlines>;
  /** Called about once a second with a one-line status (live progress). */
  onProgress?: (line: string) => void;
}

export interface StepResult {
  agents: number;
  durationSeconds: number;
  phases: Partial<Record<Phase, Percentiles>>;
  sessions: number;
  requests: number;
  keepalives: number;
  reconnects: number;
  drops: number;
  errors: Array<{ class: string; count: number; example: string; firstAtMs: number }>;
  errorRate: number;
  windows: Window[];
  sustained: boolean;
  /** Why it did not hold (empty when it did). */
  broke: string[];
}

export interface LoadReport {
  schema: typeof LOAD_SCHEMA;
  version: string;
  startedAt: string;
  proxy: { id: string; version: string; runtime: string; url: string };
  timeScale: number;
  rampSeconds: number;
  mix: Array<{ profile: string; weight: number; agents: number } & Omit<AgentModel, 'profile'>>;
  slo: Slo;
  phaseMeaning: typeof PHASE_MEANING;
  steps: StepResult[];
  capacity: { sustained: boolean; agents?: number; brokeAt?: number; verdict: string };
}

const DEFAULT_DEADLINES: LoadDeadlines = {
  connectMs: 5_000,
  answerMs: 15_000,
  tlsMs: 10_000,
  requestMs: 30_000,
};

function judge(step: Omit<StepResult, 'sustained' | 'broke'>, slo: Slo): string[] {
  const broke: string[] = [];
  for (const { phase, ms } of slo.p99) {
    const p = step.phases[phase];
    if (!p) broke.push(`no ${phase} was measured`);
    else if (p.p99 > ms) broke.push(`p99 ${phase} ${p.p99} ms over ${ms} ms`);
  }
  if (step.errorRate > slo.maxErrorRate) {
    const top = step.errors.filter((e) => e.class !== 'tunnel dropped').sort((a, b) => b.count - a.count)[0];
    broke.push(
      `error rate ${(step.errorRate * 100).toFixed(2)} % over ${(slo.maxErrorRate * 100).toFixed(2)} %${top ? ` (mostly ${top.class}: ${top.example})` : ''}`,
    );
  }
  if (step.drops > slo.maxDrops) broke.push(`${step.drops} held tunnels dropped`);
  return broke;
}

async function runStep(
  opts: LoadOptions,
  started: StartedProxy,
  ca: string[],
  clientCert: { certPem: string; keyPem: string },
  models: Array<{ model: AgentModel; agents: number }>,
  agents: number,
): Promise<StepResult> {
  const t0 = performance.now();
  const open = { n: 0 };
  const recorder = new PhaseRecorder(t0, () => open.n);
  const counters = newCounters();
  const signal = stopSignal();
  const ctx: AgentContext = {
    proxy: {
      host: started.host,
      port: started.port,
      auth: proxyAuthFor(started.credentials),
      ...(started.client ? { resolve: (h: string) => started.client?.resolve(h) } : {}),
    },
    ca,
    clientCert,
    recorder,
    counters,
    deadlines: { ...DEFAULT_DEADLINES, ...opts.deadlines },
    timeScale: opts.timeScale,
    t0,
    stopped: signal.stopped,
    isStopped: signal.isStopped,
    open,
  };
  // the agents start in a mix, each profile spread evenly over the ramp: agent i of a profile with
  // n agents starts at the fraction i/n of it
  const plans = models
    .flatMap(({ model, agents: n }) =>
      Array.from({ length: n }, (_, i) => ({ at: i / n, sessions: model.sessions })),
    )
    .sort((a, b) => a.at - b.at)
    .flatMap((a) => a.sessions);
  const rampMs = Math.min(opts.rampSeconds, opts.durationSeconds) * 1000;
  const sessions: Promise<void>[] = [];
  const timers: NodeJS.Timeout[] = [];
  plans.forEach((plan, i) => {
    const at = plans.length > 1 ? (rampMs * i) / (plans.length - 1) : 0;
    sessions.push(
      new Promise<void>((resolve) => {
        timers.push(
          setTimeout(() => {
            if (signal.isStopped()) resolve();
            else void runSession(ctx, plan).then(resolve);
          }, at),
        );
      }),
    );
  });
  const progress = setInterval(() => {
    recorder.roll();
    const p = recorder.summary();
    opts.onProgress?.(
      `load ${agents} agents: ${((performance.now() - t0) / 1000).toFixed(0)}/${opts.durationSeconds} s, ${open.n} sessions open, ${counters.requests} requests, ${counters.keepalives} keep-alives, p99 connect ${p.connect?.p99 ?? '-'} ms, ${[...counters.errors.values()].reduce((s, e) => s + e.count, 0)} errors`,
    );
  }, 1000);
  await new Promise((r) => setTimeout(r, opts.durationSeconds * 1000));
  signal.stop();
  clearInterval(progress);
  for (const t of timers) clearTimeout(t);
  await Promise.all(sessions);
  recorder.roll();
  const errors = [...counters.errors.entries()].map(([k, v]) => ({ class: k, ...v }));
  const errorCount = errors.reduce((s, e) => s + e.count, 0);
  const base = {
    agents,
    durationSeconds: opts.durationSeconds,
    phases: recorder.summary(),
    sessions: counters.sessions,
    requests: counters.requests,
    keepalives: counters.keepalives,
    reconnects: counters.reconnects,
    drops: counters.drops,
    errors,
    errorRate: errorCount / Math.max(1, counters.sessions + errorCount),
    windows: recorder.windows,
  };
  recorder.destroy();
  const broke = judge(base, opts.slo);
  return { ...base, sustained: broke.length === 0, broke };
}

function capacity(steps: StepResult[], slo: Slo): LoadReport['capacity'] {
  const held = steps.filter((s) => s.sustained);
  const failed = steps.find((s) => !s.sustained);
  const sloText = [
    ...slo.p99.map((p) => `p99 ${p.phase} under ${p.ms} ms`),
    slo.maxErrorRate === 0 ? 'no errors' : `errors under ${(slo.maxErrorRate * 100).toFixed(2)} %`,
    slo.maxDrops === 0 ? 'no drops' : `at most ${slo.maxDrops} drops`,
  ].join(', ');
  const best = held.at(-1);
  if (!failed && best)
    return {
      sustained: true,
      agents: best.agents,
      verdict: `sustains ${best.agents} agents with ${sloText} (p99 ${slo.p99.map((p) => `${p.phase} ${best.phases[p.phase]?.p99} ms`).join(', ')})`,
    };
  const f = failed as StepResult;
  return {
    sustained: false,
    ...(best ? { agents: best.agents } : {}),
    brokeAt: f.agents,
    verdict: `${best ? `sustains ${best.agents} agents with ${sloText}; ` : ''}broke at ${f.agents} agents: ${f.broke.join('; ')}`,
  };
}

export async function runLoad(opts: LoadOptions): Promise<LoadReport> {
  if (!opts.steps.length || opts.steps.some((n) => !Number.isInteger(n) || n < 1))
    throw new UsageError('load: agent counts must be whole numbers of at least 1');
  const def = opts.scenarios.proxies.get(opts.proxy.id);
  if (def && UNREACHABLE.has(def.availability ?? 'up'))
    throw new UsageError(
      `load: proxy ${opts.proxy.id} is not there (${def.availability}); load needs a proxy that is up`,
    );
  const startedAt = new Date().toISOString();
  const profiles = opts.mix.map((m) => m.profile);
  const runDir = new RunDir('proxycheck-load-');
  const stops: Array<() => Promise<unknown>> = [];
  const stopAll = async () => {
    for (const s of stops.splice(0).reverse()) await s().catch(() => {});
  };
  const unregister = onCleanup('load run', stopAll);
  try {
    stops.push(async () => runDir.remove());
    const pki = await createLabPki(runDir.path);
    const lab = await Lab.start({ pki, hosts: labHostsFor(opts.scenarios, profiles), net: opts.labNet });
    stops.push(() => lab.stop());
    const started = await opts.proxy.start({ lab, runDir, scenarios: opts.scenarios });
    stops.push(() => started.stop());
    const ca = [
      pki.labRoot.cert.certPem,
      ...(opts.trustInspectionCa && started.inspectionCa ? [started.inspectionCa] : []),
    ];
    // vPro devices present a device certificate from the lab's device CA (CIRA's mutual TLS)
    const device = pki.deviceCa.issueLeaf(['device.load.proxycheck.test'], { clientAuth: true });
    const steps: StepResult[] = [];
    for (const agents of opts.steps) {
      const counts = splitAgents(agents, opts.mix);
      const models = opts.mix.map((m, i) => ({
        model: agentModel(m.profile, opts.scenarios),
        agents: counts[i] ?? 0,
      }));
      const step = await runStep(opts, started, ca, device, models, agents);
      steps.push(step);
      if (!step.sustained) break;
    }
    const counts = splitAgents(opts.steps.at(-1) ?? 0, opts.mix);
    return {
      schema: LOAD_SCHEMA,
      version: VERSION,
      startedAt,
      proxy: { id: started.id, version: started.version, runtime: started.runtime, url: started.url },
      timeScale: opts.timeScale,
      rampSeconds: opts.rampSeconds,
      mix: opts.mix.map((m, i) => {
        const { profile: _p, ...model } = agentModel(m.profile, opts.scenarios);
        return { profile: m.profile.id, weight: m.weight, agents: counts[i] ?? 0, ...model };
      }),
      slo: opts.slo,
      phaseMeaning: PHASE_MEANING,
      steps,
      capacity: capacity(steps, opts.slo),
    };
  } finally {
    unregister();
    await stopAll();
  }
}
