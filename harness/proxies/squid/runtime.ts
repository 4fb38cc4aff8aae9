/**
 * Which squid runtime this machine can use, and the testcontainers set-up.
 *
 * testcontainers needs two settings on machines like CI's (dockerd started with
 * `--bridge=none`, no registry): `TESTCONTAINERS_RYUK_DISABLED=true` (Ryuk, the reaper, is an image
 * that would have to be pulled; we stop and label our containers ourselves) and
 * `TESTCONTAINERS_HOST_OVERRIDE=127.0.0.1` (our containers use the host network). We set these as
 * defaults only when they are unset; set them yourself to override.
 */
import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';
import { errorMessage, SetupError, withDeadline } from '../../errors.ts';
import type { Runtime } from '../registry.ts';
import { buildSquidImage, squidImageTag } from './image.ts';

export type ConcreteRuntime = 'process' | 'container';

const ENGINE_DEADLINE_MS = 10_000;

type Testcontainers = typeof import('testcontainers');
let tc: Promise<Testcontainers> | undefined;

/** Loads testcontainers (lazily: in-process and process runs never pay for it) with our defaults. */
export function testcontainers(): Promise<Testcontainers> {
  process.env.TESTCONTAINERS_RYUK_DISABLED ??= 'true';
  process.env.TESTCONTAINERS_HOST_OVERRIDE ??= '127.0.0.1';
  tc ??= import('testcontainers');
  return tc;
}

/** The squid binary: `PROXYCHECK_SQUID` or /usr/sbin/squid or `squid` on PATH; undefined if none. */
export function squidBinary(): string | undefined {
  const candidates = process.env.PROXYCHECK_SQUID
    ? [process.env.PROXYCHECK_SQUID]
    : ['/usr/sbin/squid', ...(process.env.PATH ?? '').split(delimiter).map((d) => join(d, 'squid'))];
  for (const c of candidates) {
    try {
      accessSync(c, constants.X_OK);
      return c;
    } catch {
      // next
    }
  }
  return undefined;
}

/** Resolves with undefined when a container engine answers, else with why not (one line). */
export async function engineProblem(): Promise<string | undefined> {
  try {
    const { getContainerRuntimeClient } = await testcontainers();
    await withDeadline('container engine check', ENGINE_DEADLINE_MS, () => getContainerRuntimeClient());
    return undefined;
  } catch (err) {
    return `no container engine answers (${errorMessage(err)})`;
  }
}

let decided: Promise<ConcreteRuntime> | undefined;

/**
 * `container` and `process` are taken as asked (problems surface when the proxy starts). `auto`:
 * container if an engine answers and the image exists or can be built, else process if squid is
 * installed, else a one-line SetupError naming what is missing. Decided once per process.
 */
export function resolveRuntime(runtime: Runtime): Promise<ConcreteRuntime> {
  if (runtime !== 'auto') return Promise.resolve(runtime);
  decided ??= (async (): Promise<ConcreteRuntime> => {
    const problems: string[] = [];
    const engine = await engineProblem();
    if (!engine) {
      try {
        await ensureSquidImage();
        return 'container';
      } catch (err) {
        problems.push(`squid image ${squidImageTag()} missing and cannot be built (${errorMessage(err)})`);
      }
    } else {
      problems.push(engine);
    }
    if (squidBinary()) return 'process';
    problems.push('squid is not installed (no /usr/sbin/squid; install squid-openssl)');
    throw new SetupError(`no way to run squid: ${problems.join('; ')}`);
  })();
  return decided;
}

let imageReady: Promise<string> | undefined;

/** The current squid image tag, built first if it does not exist yet. */
export function ensureSquidImage(): Promise<string> {
  imageReady ??= buildSquidImage().then((r) => r.image);
  imageReady.catch(() => {
    imageReady = undefined;
  });
  return imageReady;
}
