/**
 * Real squid behind ProxyUnderTest, configured by a policy (config.ts: SquidPolicy, the knobs of a
 * proxy definition) or by a flavour naming one (squid-default, squid-open, squid-auth, squid-bump,
 * squid-splice), as a plain process (`process`) or in a container (`container`), see
 * process.ts and container.ts. This file prepares what both need: a port, the generated
 * squid.conf, the hosts file, the per-run htpasswd (or auth loop's helper script) and the
 * signing/trust PEMs, all in one directory of the run directory.
 *
 * squid must be told its port in squid.conf, so the port is picked before squid binds it and
 * another process can take it in between: squid then logs `(98) Address already in use`, says
 * `FATAL: Unable to open HTTP Socket` and exits 1, and the start is tried again on a new port
 * (../toolkit/ports.ts: at most 3 ports, all of them named in the error if every one was taken).
 */
import { randomBytes } from 'node:crypto';
import { chmodSync, chownSync, copyFileSync, mkdirSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { SetupError } from '../../errors.ts';
import { refuseIfStopping } from '../../lifecycle.ts';
import { loadScenarios, type ScenarioSet } from '../../scenarios.ts';
import { proxyTlsName } from '../definition.ts';
import { ADDRESS_IN_USE, withPortRetry } from '../toolkit/ports.ts';
import { waitForListening } from '../toolkit/ready.ts';
import type { ConcreteRuntime, Runtime } from '../toolkit/runtime.ts';
import {
  type ProxyContext,
  type ProxyCredentials,
  type ProxyUnderTest,
  requireLab,
  type StartedProxy,
} from '../types.ts';
import { ENTERPRISE_SCHEMES, type EnterpriseScheme, type PreparedAuth, prepareAuth } from './auth-schemes.ts';
import {
  AUTH_LOOP_HELPER,
  AUTH_LOOP_HELPER_FILE,
  describePolicy,
  FLAVOUR_POLICIES,
  policyBumps,
  type SquidFlavour,
  type SquidPaths,
  type SquidPolicy,
  squidConfig,
} from './config.ts';
import { startSquidContainer } from './container.ts';
import { htpasswdLine } from './htpasswd.ts';
import { startSquidProcess } from './process.ts';
import { resolveSquidRuntime } from './runtime.ts';

export const SQUID_SUMMARIES: Record<SquidFlavour, string> = {
  default: "squid 5, Debian's stock policy (CONNECT only to port 443)",
  open: 'squid 5, CONNECT allowed to every port in our catalogs',
  auth: 'squid 5 with basic_ncsa_auth (htpasswd generated per run)',
  bump: 'squid 5 ssl_bump: peek step1 + bump all, signed by the corporate inspection CA',
  splice: 'squid 5 ssl_bump, splicing every catalog host that must not be inspected',
};

/** A flavour, a policy, or both (then the policy is what squid does and the flavour names it). */
export interface SquidOptions {
  flavour?: SquidFlavour;
  /** What squid does; without it, the flavour's policy for the run's scenarios (FLAVOUR_POLICIES). */
  policy?: SquidPolicy;
  /** The proxy id (default `squid-<flavour>`; required with a policy and no flavour). */
  id?: string;
  /** What describe() says (default: the flavour's summary, else one made from the policy). */
  summary?: string;
  /** Subject of the inspection CA squid signs with when it bumps (default: the corporate CA). */
  caSubject?: string;
  runtime?: Runtime;
  /** Readiness deadline (the "Accepting ... HTTP Socket connections" line). */
  readyTimeoutMs?: number;
  /** Scenario data for a flavour's policy: squid-open's ports, squid-splice's hosts (default: scenarios/). */
  scenarios?: ScenarioSet;
  /** Changes the generated squid.conf before squid reads it (tests apply remediation lines with it). */
  amendConfig?: (conf: string) => string;
  /** Where ports come from (default: toolkit pickPort); tests hand out a taken one. */
  pickPort?: () => Promise<number>;
}

/** What a runtime gets: the bundle on the host and how to write the config for its view of paths. */
export interface SquidLaunch {
  id: string;
  /** What squid does. */
  policy: SquidPolicy;
  port: number;
  /** Directory in the run directory holding everything of this instance. */
  dir: string;
  /** The run directory `dir` lives in (made traversable for squid's unprivileged user). */
  runDirPath: string;
  /** `dir/etc`: squid.conf (written by the runtime), hosts, htpasswd, PEMs. */
  etcDir: string;
  runId: string;
  readyTimeoutMs: number;
  /** Writes `etc/squid.conf` for the given paths (host paths or container paths) and returns its text. */
  writeConfig(
    paths: Omit<SquidPaths, 'hostsFile' | 'htpasswd' | 'signingCert' | 'signingKey' | 'originCa'>,
    etcAs: string,
  ): string;
  credentials?: ProxyCredentials;
  inspectionCa?: string;
  /** An HTTPS proxy: what the agent checks its certificate against, and the name it is for. */
  tls?: { ca: string[]; servername: string };
}

/** Everything a runtime returns; SquidProxy adds the common fields. */
export interface SquidRunning {
  runtime: 'process' | 'container';
  version: string;
  stop(): Promise<void>;
}

let instances = 0;

export class SquidProxy implements ProxyUnderTest {
  readonly id: string;
  constructor(private readonly opts: SquidOptions) {
    if (!opts.flavour && !opts.policy) throw new Error('SquidProxy needs a flavour or a policy');
    const id = opts.id ?? (opts.flavour ? `squid-${opts.flavour}` : undefined);
    if (!id) throw new Error('SquidProxy with a policy and no flavour needs an id');
    this.id = id;
  }

  describe(): string {
    const { summary, flavour, policy } = this.opts;
    return (
      summary ?? (flavour ? SQUID_SUMMARIES[flavour] : undefined) ?? describePolicy(policy as SquidPolicy)
    );
  }

  async start(ctx: ProxyContext): Promise<StartedProxy> {
    const t0 = performance.now();
    refuseIfStopping(this.id);
    const runtime = await resolveSquidRuntime(this.opts.runtime ?? 'auto');
    refuseIfStopping(this.id);
    // digest / ntlm / negotiate: their files, and for negotiate the lab realm, once for every attempt
    const policy = this.policyFor(ctx);
    const authDir = join(ctx.runDir.path, `${this.id}-auth-${++instances}`);
    const authEtc = join(authDir, 'etc');
    if (ENTERPRISE_SCHEMES.includes(policy.auth)) mkdirSync(authEtc, { recursive: true, mode: 0o755 });
    const auth = ENTERPRISE_SCHEMES.includes(policy.auth)
      ? await prepareAuth(policy.auth as EnterpriseScheme, authEtc, randomBytes(12).toString('base64url'))
      : undefined;
    let started: { launch: SquidLaunch; running: SquidRunning };
    try {
      started = await withPortRetry({
        start: (port) => this.launch(ctx, runtime, port, auth && { ...auth, etcDir: authEtc }),
        portTaken: squidPortTaken,
        ...(this.opts.pickPort ? { pick: this.opts.pickPort } : {}),
      });
    } catch (err) {
      await auth?.stop();
      throw err;
    }
    const { launch, running } = started;
    return {
      id: this.id,
      kind: launch.inspectionCa ? 'mitm' : launch.credentials ? 'auth' : 'plain',
      runtime: running.runtime,
      version: running.version,
      url: `${launch.tls ? 'https' : 'http'}://127.0.0.1:${launch.port}`,
      host: '127.0.0.1',
      port: launch.port,
      ...(launch.credentials ? { credentials: launch.credentials } : {}),
      ...(launch.inspectionCa ? { inspectionCa: launch.inspectionCa } : {}),
      ...(launch.tls ? { tls: launch.tls } : {}),
      startMs: Math.round(performance.now() - t0),
      stop: async () => {
        await running.stop();
        await auth?.stop();
      },
    };
  }

  private policyFor(ctx: ProxyContext): SquidPolicy {
    const policy =
      this.opts.policy ??
      FLAVOUR_POLICIES[this.opts.flavour as SquidFlavour](
        ctx.scenarios ?? this.opts.scenarios ?? loadScenarios(),
      );
    return ctx.parent ? { ...policy, parent: ctx.parent } : policy;
  }

  /** One start on `port`, in a directory of its own (a retry does not reuse a failed one's). */
  private async launch(
    ctx: ProxyContext,
    runtime: ConcreteRuntime,
    port: number,
    auth?: PreparedAuth & { etcDir: string },
  ): Promise<{ launch: SquidLaunch; running: SquidRunning }> {
    const launch = await this.prepare(ctx, port, auth);
    const running =
      runtime === 'container' ? await startSquidContainer(launch) : await startSquidProcess(launch);
    // squid logs "Accepting ... connections" before its (asynchronous) listen(): on bump ports a
    // connection right after the line can be refused. Ready means the port accepts.
    try {
      await waitForListening(
        launch.port,
        launch.readyTimeoutMs,
        `${this.id} (${runtime}) port ${launch.port}`,
      );
    } catch (err) {
      await running.stop();
      throw err;
    }
    return { launch, running };
  }

  private async prepare(
    ctx: ProxyContext,
    port: number,
    auth?: PreparedAuth & { etcDir: string },
  ): Promise<SquidLaunch> {
    const lab = requireLab(ctx, this.id);
    const { runDir } = ctx;
    const policy = this.policyFor(ctx);
    const dir = join(runDir.path, `${this.id}-${++instances}`);
    const etcDir = join(dir, 'etc');
    mkdirSync(etcDir, { recursive: true, mode: 0o755 });
    writeFileSync(join(etcDir, 'hosts'), lab.hostsFile(), { mode: 0o644 });

    let credentials: ProxyCredentials | undefined = auth?.credentials;
    // the scheme's files, beside squid.conf
    for (const f of auth ? readdirSync(auth.etcDir) : [])
      copyKeepingOwner(join(auth?.etcDir ?? '', f), join(etcDir, f));
    if (!auth && policy.auth !== 'none') {
      // auth loop: the agent gets credentials like any auth proxy's; squid rejects them all the same
      credentials = { username: 'agent', password: randomBytes(12).toString('base64url') };
    }
    if (credentials && policy.auth === 'basic') {
      // read by basic_ncsa_auth, which runs as squid's unprivileged user
      writeFileSync(join(etcDir, 'htpasswd'), htpasswdLine(credentials.username, credentials.password), {
        mode: 0o644,
      });
    }
    const loopHelper = join(etcDir, AUTH_LOOP_HELPER_FILE);
    if (policy.auth === 'loop') {
      // run by squid's unprivileged user (as a process, or in the container from the bind mount)
      writeFileSync(loopHelper, AUTH_LOOP_HELPER, { mode: 0o755 });
      chmodSync(loopHelper, 0o755); // whatever the umask
    }
    const bumping = policyBumps(policy);
    let inspectionCa: string | undefined;
    if (bumping) {
      const ca = await lab.pki.inspectionCa(this.opts.caSubject);
      copyFileSync(ca.cert.certFile, join(etcDir, 'signing-ca.crt'));
      copyFileSync(ca.cert.keyFile, join(etcDir, 'signing-ca.key')); // 0600: read by squid as root
      writeFileSync(join(etcDir, 'origin-ca.crt'), lab.pki.labRoot.cert.certPem, { mode: 0o644 });
      inspectionCa = ca.cert.certPem;
    }
    let tls: SquidLaunch['tls'];
    if (policy.tls) {
      // an HTTPS proxy: a certificate for its name from the lab CA (the agent trusts that CA)
      const servername = proxyTlsName(this.id);
      const leaf = lab.pki.labRoot.issueLeaf([servername]);
      copyFileSync(leaf.certFile, join(etcDir, 'proxy.crt'));
      chmodSync(join(etcDir, 'proxy.crt'), 0o644);
      copyFileSync(leaf.keyFile, join(etcDir, 'proxy.key')); // read by squid as root
      tls = { ca: [lab.pki.labRoot.cert.certPem], servername };
    }
    return {
      id: this.id,
      policy,
      port,
      dir,
      runDirPath: runDir.path,
      etcDir,
      runId: basename(runDir.path),
      readyTimeoutMs: this.opts.readyTimeoutMs ?? 30_000,
      ...(credentials ? { credentials } : {}),
      ...(inspectionCa ? { inspectionCa } : {}),
      ...(tls ? { tls } : {}),
      writeConfig: (paths, etcAs) => {
        const text = squidConfig({
          policy,
          label: this.id,
          port,
          paths: {
            ...paths,
            hostsFile: `${etcAs}/hosts`,
            ...(policy.auth === 'basic' ? { htpasswd: `${etcAs}/htpasswd` } : {}),
            ...(policy.auth === 'loop' ? { authLoopHelper: `${etcAs}/${AUTH_LOOP_HELPER_FILE}` } : {}),
            ...(auth ? { authHelperArgs: auth.helperArgs(etcAs) } : {}),
            ...(tls ? { proxyCert: `${etcAs}/proxy.crt`, proxyKey: `${etcAs}/proxy.key` } : {}),
            ...(bumping
              ? {
                  signingCert: `${etcAs}/signing-ca.crt`,
                  signingKey: `${etcAs}/signing-ca.key`,
                  originCa: `${etcAs}/origin-ca.crt`,
                }
              : {}),
          },
        });
        const final = this.opts.amendConfig ? this.opts.amendConfig(text) : text;
        writeFileSync(join(etcDir, 'squid.conf'), final, { mode: 0o644 });
        return final;
      },
    };
  }
}

/** Copies a file with its mode and owner (the keytab belongs to squid's user). */
function copyKeepingOwner(from: string, to: string): void {
  copyFileSync(from, to);
  const st = statSync(from);
  chownSync(to, st.uid, st.gid);
}

/** squid could not bind its port: its stderr, cache.log or container logs say the address is in use. */
function squidPortTaken(err: unknown): boolean {
  if (!(err instanceof SetupError)) return false;
  const { stderr, cacheLog, containerLogs } = err.evidence;
  return [stderr, cacheLog, containerLogs].some(
    (text) => typeof text === 'string' && ADDRESS_IN_USE.test(text),
  );
}
