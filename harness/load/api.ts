/**
 * `proxycheck/load`: one simulated agent as a function, for load tools that scale a fleet beyond one
 * machine (packages/artillery-engine-proxycheck runs it as an Artillery scenario). The agent is the
 * one `proxycheck load` runs (harness/load/agents.ts: the profile's steady traffic from the seeds,
 * each phase measured), reporting through callbacks instead of proxycheck's own histograms.
 */
import { readFileSync } from 'node:fs';
import { UsageError } from '../errors.ts';
import { parseProxyUrl } from '../proxies/external.ts';
import { proxyAuthFor } from '../route/auth.ts';
import { loadScenarios } from '../scenarios.ts';
import { type AgentContext, type Counters, newCounters, runSession, stopSignal } from './agents.ts';
import { PHASE_MEANING, PHASES, type Phase } from './histograms.ts';
import { agentModel } from './model.ts';

export { PHASE_MEANING, PHASES, type Phase };

export interface AgentRun {
  /** The proxy, `http://[user:pass@]host:port`. */
  proxy: string;
  /** A profile id (proxycheck list shows them). */
  profile: string;
  /** Real seconds the agent runs. */
  seconds: number;
  /** PEM files the agent trusts (the lab root, or an inspection CA it was given). */
  caFiles: string[];
  /** A vPro device's certificate and key (PEM files) for CIRA's mutual TLS. */
  clientCertFiles?: { cert: string; key: string };
  /** Profile seconds × timeScale = real seconds (default 1: the agent's real schedule). */
  timeScale?: number;
  /** Values for the catalog host parameters ("***" tenant part; default lab01). */
  tenant?: string;
  /** A latency of one phase, in ms. */
  onPhase(phase: Phase, ms: number): void;
  /** A counted event: `requests`, `keepalives`, `sessions`, `reconnects`, `drops`. */
  onCount(name: keyof Omit<Counters, 'errors'>, n: number): void;
  /** An error by class (`connect 403`, `tls`, `tunnel dropped`, ...), with an example message. */
  onError(errorClass: string, message: string): void;
}

/** Runs one agent of `profile` through `proxy` for `seconds`; resolves with its error count. */
export async function runAgent(run: AgentRun): Promise<number> {
  const set = loadScenarios({ tenant: run.tenant ?? 'lab01' });
  const profile = set.profiles.get(run.profile);
  if (!profile) throw new UsageError(`unknown profile "${run.profile}"`);
  const model = agentModel(profile, set);
  if (!model.sessions.length)
    throw new UsageError(`profile ${run.profile} has no traffic simulated under load`);
  const { host, port, credentials } = parseProxyUrl(run.proxy);
  const ca = run.caFiles.map((f) => readFileSync(f, 'utf8'));
  let errors = 0;
  const signal = stopSignal();
  const counters = newCounters();
  const ctx: AgentContext = {
    proxy: { host, port, auth: proxyAuthFor(credentials) },
    ca,
    ...(run.clientCertFiles
      ? {
          clientCert: {
            certPem: readFileSync(run.clientCertFiles.cert, 'utf8'),
            keyPem: readFileSync(run.clientCertFiles.key, 'utf8'),
          },
        }
      : {}),
    recorder: { record: (phase, ms) => run.onPhase(phase, ms), error: () => errors++ },
    onError: (c, m) => run.onError(c, m),
    counters,
    deadlines: { connectMs: 10_000, answerMs: 15_000, tlsMs: 10_000, requestMs: 30_000 },
    timeScale: run.timeScale ?? 1,
    t0: performance.now(),
    stopped: signal.stopped,
    isStopped: signal.isStopped,
    open: { n: 0 },
  };
  const timer = setTimeout(signal.stop, run.seconds * 1000);
  await Promise.all(model.sessions.map((plan) => runSession(ctx, plan)));
  clearTimeout(timer);
  for (const name of ['sessions', 'requests', 'reconnects', 'keepalives', 'drops'] as const)
    if (counters[name]) run.onCount(name, counters[name]);
  return errors;
}
