/** What a run is asked to do (runMatrix's options) and the defaults it falls back on. */
import type { Timeouts } from '../agent/kinds/types.ts';
import type { CheckResult } from '../model.ts';
import type { Runtime } from '../proxies/toolkit/runtime.ts';
import type { ProxyUnderTest } from '../proxies/types.ts';
import type { Profile, ProfileExchange, ScenarioSet } from '../scenarios.ts';
import type { OriginsStrategy } from './origins.ts';
import type { Shard } from './shard.ts';

/** (proxy, profile) work items of proxies that are up, in flight at once across the run. */
export const DEFAULT_JOBS = 8;

/** Default --time-scale: profile durations (15 s samples, 30 s keep-alives, ...) run 100× faster. */
export const DEFAULT_TIME_SCALE = 0.01;

export const DEFAULT_TIMEOUTS: Timeouts = {
  connectMs: 5_000,
  answerMs: 15_000,
  tlsMs: 10_000,
  requestMs: 30_000,
};

export interface RunOptions {
  proxies: Array<string | ProxyUnderTest>;
  profiles: string[] | Profile[];
  /** For proxies that can run in a container or as a process (squid). */
  runtime?: Runtime;
  /** Where the exchanges end (default: the lab, configured by labNet/trustCorporateCa/extraTrust). */
  origins?: OriginsStrategy;
  labNet?: number;
  tenant?: string;
  /** The enterprise deployed the corporate inspection CA to the agents' trust store. */
  trustCorporateCa?: boolean;
  /** More PEM CAs in the agents' trust store (a customer's own inspection CA, for `validate`). */
  extraTrust?: string[];
  timeouts?: Partial<Timeouts>;
  /** Multiplies every duration in the profiles (1 = real time; default DEFAULT_TIME_SCALE). */
  timeScale?: number;
  /**
   * Real seconds to wait when measuring the proxy's tunnel timers (`--timer-wait`; default: as long
   * as the replayed session lasts here, at least 10 s). Never compressed by the time scale.
   */
  timerWait?: number;
  /** The option a user gives to wait longer, named in `tunnel-keepalive` skips (default --timer-wait). */
  timerWaitOption?: string;
  scenarios?: ScenarioSet;
  /** The host an exchange talks to (default: its catalog host with the run's values filled in). */
  hostOf?: (x: ProfileExchange) => string;
  /** Exchanges of one profile in flight at once (default: all, as an agent runs them). */
  concurrency?: number;
  /**
   * (proxy, profile) work items of proxies that are up, in flight at once across all proxies
   * (default DEFAULT_JOBS; 1 runs them one after another). Proxies start and run side by side.
   */
  jobs?: number;
  onResult?: (r: CheckResult) => void;
  /** Run only this shard's (proxy, profile) work items; proxies with none are not started. */
  shard?: Shard;
  /** A (proxy, profile) work item starts (its proxy is up) or is done (all its results reported). */
  onWorkItem?: (phase: 'start' | 'done', proxy: string, profile: string) => void;
}
