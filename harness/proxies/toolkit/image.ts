/**
 * Our container images: built from a directory of `containers/` and tagged `<repo>:<hash>`, where
 * the hash covers every file of the build context, so an image built from an older Dockerfile is
 * never used. `buildImage()` is idempotent.
 *
 * Base image: `debian:bookworm-slim` when it is present or can be pulled; otherwise (no registry)
 * a local `debootstrap` base built by `containers/base/build-offline-base.sh`
 * (`proxycheck/debian-base:bookworm`), and the Dockerfile is built on it with `--network host`.
 */
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { errorMessage, SetupError } from '../../errors.ts';
import { type CommandResult, runCommand } from './command.ts';
import { OUR_LABEL } from './container.ts';

export const CONTAINERS_DIR = fileURLToPath(new URL('../../../containers/', import.meta.url));
export const OFFLINE_BASE_SCRIPT = join(CONTAINERS_DIR, 'base', 'build-offline-base.sh');
export const REGISTRY_BASE = 'debian:bookworm-slim';
export const OFFLINE_BASE = 'proxycheck/debian-base:bookworm';

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
export function contextHash(context: string): string {
  const h = createHash('sha256');
  for (const file of filesUnder(context)) {
    h.update(relative(context, file)).update('\0').update(readFileSync(file)).update('\0');
  }
  return h.digest('hex').slice(0, 12);
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
async function chooseBase(forced: string | undefined): Promise<string> {
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

export interface ImageBuild {
  /** The tag to build (or to find). */
  image: string;
  /** The build context: a directory with a Dockerfile taking `ARG BASE`. */
  context: string;
  /** Rebuild even if the image exists. */
  force?: boolean;
  /** Build on this base instead of choosing one. */
  base?: string;
  /** Set when the tag came from this environment variable: a user's image, never built by us. */
  userImageVar?: string;
}

/** Builds `image` from `context` unless an image with that tag exists. */
export async function buildImage(b: ImageBuild): Promise<BuildResult> {
  const t0 = performance.now();
  const { image, context } = b;
  const info = await docker(['info', '--format', '{{.ServerVersion}}'], 'docker info');
  if (info.code !== 0) {
    throw new SetupError(
      `no container engine answers (docker info: ${info.stderr.trim().split('\n').pop() ?? 'failed'}); start dockerd or run containers/setup-engine.sh`,
    );
  }
  if (!b.force && (await dockerImageExists(image))) {
    return { image, built: false, ms: Math.round(performance.now() - t0) };
  }
  if (b.userImageVar) {
    throw new SetupError(`${b.userImageVar}=${image} does not exist and is not ours to build`);
  }
  const base = await chooseBase(b.base);
  log(`building ${image} on ${base} (docker build --network host ${context}) ...`);
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
      `${OUR_LABEL}.context-hash=${contextHash(context)}`,
      '-t',
      image,
      context,
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
