/**
 * The squid image: `containers/squid/Dockerfile`, tagged `proxycheck/squid:<hash>` where the hash
 * covers every file in `containers/squid/`, so an image built from an older Dockerfile is never
 * used. `buildSquidImage()` is what `proxycheck images build` runs; it is idempotent.
 *
 * Base image: `debian:bookworm-slim` when it is present or can be pulled; otherwise (no registry)
 * a local `debootstrap` base built by `containers/base/build-offline-base.sh`
 * (`proxycheck/debian-base:bookworm`), and the Dockerfile is built on it with `--network host`.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DeadlineError, errorMessage, SetupError } from '../../errors.ts';

export const CONTAINERS_DIR = fileURLToPath(new URL('../../../containers/', import.meta.url));
export const SQUID_CONTEXT = join(CONTAINERS_DIR, 'squid');
export const OFFLINE_BASE_SCRIPT = join(CONTAINERS_DIR, 'base', 'build-offline-base.sh');
export const SQUID_IMAGE_REPO = 'proxycheck/squid';
export const REGISTRY_BASE = 'debian:bookworm-slim';
export const OFFLINE_BASE = 'proxycheck/debian-base:bookworm';
/** Label on everything we create, so `proxycheck clean` can find leftovers. */
export const OUR_LABEL = 'proxycheck';

function filesUnder(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir).sort()) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) out.push(...filesUnder(path));
    else out.push(path);
  }
  return out;
}

/** sha256 over every file of the build context (relative path and contents), first 12 hex digits. */
export function squidContextHash(context = SQUID_CONTEXT): string {
  const h = createHash('sha256');
  for (const file of filesUnder(context)) {
    h.update(relative(context, file)).update('\0').update(readFileSync(file)).update('\0');
  }
  return h.digest('hex').slice(0, 12);
}

/** `proxycheck/squid:<hash>`, or `PROXYCHECK_SQUID_IMAGE` when set (a user-provided image). */
export function squidImageTag(): string {
  return process.env.PROXYCHECK_SQUID_IMAGE || `${SQUID_IMAGE_REPO}:${squidContextHash()}`;
}

export interface CommandResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a command, collecting its output; `echo` streams stderr+stdout to our stderr as well. */
export function runCommand(
  cmd: string,
  args: string[],
  opts: { timeoutMs: number; what: string; echo?: boolean; env?: NodeJS.ProcessEnv },
): Promise<CommandResult> {
  return new Promise((resolve, reject) => {
    let stdout = '';
    let stderr = '';
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env: opts.env ?? process.env });
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new DeadlineError(opts.what, opts.timeoutMs));
    }, opts.timeoutMs);
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
      if (opts.echo) process.stderr.write(d);
    });
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
      if (opts.echo) process.stderr.write(d);
    });
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(new SetupError(`${opts.what}: cannot run ${cmd}: ${errorMessage(err)}`));
    });
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

async function docker(
  args: string[],
  what: string,
  timeoutMs = 15_000,
  echo = false,
): Promise<CommandResult> {
  return runCommand('docker', args, { what, timeoutMs, echo });
}

export async function dockerImageExists(image: string): Promise<boolean> {
  const r = await docker(['image', 'inspect', '--format', '{{.Id}}', image], `docker image inspect ${image}`);
  return r.code === 0;
}

export interface BuildResult {
  image: string;
  built: boolean;
  base?: string;
  ms: number;
}

function log(msg: string): void {
  process.stderr.write(`proxycheck: ${msg}\n`);
}

/** The base the Dockerfile is built on: local registry base, offline base, a pulled base, or a new offline base. */
async function chooseBase(): Promise<string> {
  const forced = process.env.PROXYCHECK_SQUID_BASE;
  if (forced) return forced;
  if (await dockerImageExists(REGISTRY_BASE)) return REGISTRY_BASE;
  if (await dockerImageExists(OFFLINE_BASE)) return OFFLINE_BASE;
  log(`pulling ${REGISTRY_BASE} ...`);
  try {
    const pulled = await docker(['pull', REGISTRY_BASE], `docker pull ${REGISTRY_BASE}`, 120_000);
    if (pulled.code === 0) return REGISTRY_BASE;
    log(`cannot pull ${REGISTRY_BASE} (${pulled.stderr.trim().split('\n').pop() ?? 'no registry'})`);
  } catch (err) {
    log(`cannot pull ${REGISTRY_BASE} (${errorMessage(err)})`);
  }
  log(`building the offline base ${OFFLINE_BASE} with ${OFFLINE_BASE_SCRIPT} (debootstrap) ...`);
  const r = await runCommand('bash', [OFFLINE_BASE_SCRIPT], {
    what: 'offline base build (debootstrap)',
    timeoutMs: 15 * 60_000,
    echo: true,
    env: { ...process.env, IMAGE: OFFLINE_BASE },
  });
  if (r.code !== 0) {
    throw new SetupError(
      `no Debian base image: ${REGISTRY_BASE} cannot be pulled and ${OFFLINE_BASE_SCRIPT} failed (exit ${r.code})`,
      { stderr: r.stderr.slice(-4000) },
    );
  }
  return OFFLINE_BASE;
}

/** Builds the squid image unless an image with the current tag exists. */
export async function buildSquidImage(opts: { force?: boolean } = {}): Promise<BuildResult> {
  const t0 = performance.now();
  const image = squidImageTag();
  const info = await docker(['info', '--format', '{{.ServerVersion}}'], 'docker info');
  if (info.code !== 0) {
    throw new SetupError(
      `no container engine answers (docker info: ${info.stderr.trim().split('\n').pop() ?? 'failed'}); start dockerd or run containers/setup-engine.sh`,
    );
  }
  if (!opts.force && (await dockerImageExists(image))) {
    return { image, built: false, ms: Math.round(performance.now() - t0) };
  }
  if (process.env.PROXYCHECK_SQUID_IMAGE) {
    throw new SetupError(`PROXYCHECK_SQUID_IMAGE=${image} does not exist and is not ours to build`);
  }
  const base = await chooseBase();
  log(`building ${image} on ${base} (docker build --network host ${SQUID_CONTEXT}) ...`);
  const r = await docker(
    [
      'build',
      '--network',
      'host',
      '--build-arg',
      `BASE=${base}`,
      '--label',
      `${OUR_LABEL}=1`,
      '--label',
      `${OUR_LABEL}.context-hash=${squidContextHash()}`,
      '-t',
      image,
      SQUID_CONTEXT,
    ],
    `docker build ${image}`,
    15 * 60_000,
    true,
  );
  if (r.code !== 0) {
    throw new SetupError(`docker build ${image} failed (exit ${r.code})`, { stderr: r.stderr.slice(-4000) });
  }
  return { image, built: true, base, ms: Math.round(performance.now() - t0) };
}
