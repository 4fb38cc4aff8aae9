/**
 * Which runtime squid gets on this machine (the choice itself is the toolkit's:
 * ../toolkit/runtime.ts), where its binary is, and its image, built once per process if missing.
 */
import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';
import { type ConcreteRuntime, type Runtime, resolveRuntime } from '../toolkit/runtime.ts';
import { buildSquidImage, squidImageTag } from './image.ts';

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

let imageReady: Promise<string> | undefined;

/** The current squid image tag, built first if it does not exist yet. */
export function ensureSquidImage(): Promise<string> {
  imageReady ??= buildSquidImage().then((r) => r.image);
  imageReady.catch(() => {
    imageReady = undefined;
  });
  return imageReady;
}

/**
 * `container` and `process` as asked; `auto`: container if an engine answers and the squid image
 * exists or can be built, else process if squid is installed, else a one-line SetupError.
 */
export function resolveSquidRuntime(runtime: Runtime): Promise<ConcreteRuntime> {
  return resolveRuntime(runtime, {
    product: 'squid',
    imageTag: squidImageTag,
    ensureImage: ensureSquidImage,
    binary: squidBinary,
    notInstalled: 'squid is not installed (no /usr/sbin/squid; install squid-openssl)',
  });
}
