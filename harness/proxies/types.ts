/**
 * One adapter per proxy kind behind one interface, whether it runs in-process, as a process or in
 * a container (after testcontainers' modules: `start()` returns a typed Started... object).
 */
import type { ProxyTls } from '../agent/proxy-tls.ts';
import type { Lab } from '../lab/lab.ts';
import type { RunDir } from '../lab/rundir.ts';
import type { ProxyCredentials } from '../route/auth.ts';
import type { ClientNetwork } from '../route/client-network.ts';
import type { ScenarioSet } from '../scenarios.ts';
import type { Availability } from './definition.ts';

export type { ProxyCredentials };

export interface StartedProxy {
  /** The proxy id used in results, e.g. `chain-mitm`. */
  id: string;
  /** What it is: `plain`, `auth` or `mitm`. */
  kind: 'plain' | 'auth' | 'mitm' | 'external';
  /** `in-process`, `process`, `container` or `external`. */
  runtime: string;
  /** The implementation and its version, e.g. `proxy-chain 3.0.1`. */
  version: string;
  /** `http://127.0.0.1:PORT`, `https://` for an HTTPS proxy (never with credentials). */
  url: string;
  host: string;
  port: number;
  credentials?: ProxyCredentials;
  /** An HTTPS proxy: the CA its certificate is checked against and the name it is for (sent as SNI). */
  tls?: ProxyTls;
  /** PEM of the CA that re-signs intercepted TLS, for intercepting proxies. */
  inspectionCa?: string;
  /** How long start() took. */
  startMs: number;
  /** Whether the agent finds the proxy there (default up). */
  availability?: Availability;
  /** The agent machine's network around this proxy: its name service and auto detect (default: the lab's names, no auto-detect source, DIRECT allowed). */
  client?: ClientNetwork;
  /** The proxies the client network's proxy script names, started beside this one: definition id and host:port. */
  scriptProxies?: Array<{ id: string; at: string }>;
  stop(): Promise<void>;
}

export interface ProxyContext {
  /** The lab, when the run's origins are ours (absent for live hosts). */
  lab?: Lab;
  runDir: RunDir;
  /** The run's scenario data (catalog ports, hosts to splice, tenant); the built-in set when absent. */
  scenarios?: ScenarioSet;
  /** A chain: the parent proxy this one forwards to, already started (engines.ts WithParent). */
  parent?: { id: string; host: string; port: number };
}

export interface ProxyUnderTest {
  id: string;
  describe(): string;
  start(ctx: ProxyContext): Promise<StartedProxy>;
}

/** The lab of a run whose origins are ours; proxies we configure from the lab cannot run without it. */
export function requireLab(ctx: ProxyContext, proxyId: string): Lab {
  if (!ctx.lab) throw new Error(`proxy ${proxyId} needs the lab origins (it is configured from the lab)`);
  return ctx.lab;
}
