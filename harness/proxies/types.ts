/**
 * One adapter per proxy kind behind one interface, whether it runs in-process, as a process or in
 * a container (after testcontainers' modules: `start()` returns a typed Started... object).
 */
import type { Lab } from '../lab/lab.ts';
import type { RunDir } from '../lab/rundir.ts';
import type { ScenarioSet } from '../scenarios.ts';

export interface ProxyCredentials {
  username: string;
  password: string;
}

export interface StartedProxy {
  /** The proxy id used in results, e.g. `chain-mitm`. */
  id: string;
  /** What it is: `plain`, `auth` or `mitm`. */
  kind: 'plain' | 'auth' | 'mitm' | 'external';
  /** `in-process`, `process`, `container` or `external`. */
  runtime: string;
  /** The implementation and its version, e.g. `proxy-chain 3.0.1`. */
  version: string;
  /** `http://127.0.0.1:PORT` (never with credentials). */
  url: string;
  host: string;
  port: number;
  credentials?: ProxyCredentials;
  /** PEM of the CA that re-signs intercepted TLS, for intercepting proxies. */
  inspectionCa?: string;
  /** How long start() took. */
  startMs: number;
  stop(): Promise<void>;
}

export interface ProxyContext {
  lab: Lab;
  runDir: RunDir;
  /** The run's scenario data (catalog ports, hosts to splice, tenant); the built-in set when absent. */
  scenarios?: ScenarioSet;
}

export interface ProxyUnderTest {
  id: string;
  describe(): string;
  start(ctx: ProxyContext): Promise<StartedProxy>;
}
