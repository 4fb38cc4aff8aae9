/**
 * The squid image: `containers/squid/Dockerfile`, tagged `proxycheck/squid:<hash>` where the hash
 * covers every file in `containers/squid/`, so an image built from an older Dockerfile is never
 * used. `buildSquidImage()` is what `proxycheck images build` runs; it is idempotent. How images
 * are built (and on which Debian base) is the toolkit's: ../toolkit/image.ts.
 */
import { join } from 'node:path';
import { type BuildResult, buildImage, CONTAINERS_DIR, contextHash } from '../toolkit/image.ts';

export const SQUID_CONTEXT = join(CONTAINERS_DIR, 'squid');
export const SQUID_IMAGE_REPO = 'proxycheck/squid';

/** sha256 over every file of the squid build context, first 12 hex digits. */
export function squidContextHash(context = SQUID_CONTEXT): string {
  return contextHash(context);
}

/** `proxycheck/squid:<hash>`, or `PROXYCHECK_SQUID_IMAGE` when set (a user-provided image). */
export function squidImageTag(): string {
  return process.env.PROXYCHECK_SQUID_IMAGE || `${SQUID_IMAGE_REPO}:${squidContextHash()}`;
}

/**
 * Builds the squid image unless an image with the current tag exists. `PROXYCHECK_SQUID_BASE`
 * forces the base image; a `PROXYCHECK_SQUID_IMAGE` that does not exist is an error, never built.
 */
export function buildSquidImage(opts: { force?: boolean } = {}): Promise<BuildResult> {
  return buildImage({
    image: squidImageTag(),
    context: SQUID_CONTEXT,
    force: Boolean(opts.force),
    ...(process.env.PROXYCHECK_SQUID_BASE ? { base: process.env.PROXYCHECK_SQUID_BASE } : {}),
    ...(process.env.PROXYCHECK_SQUID_IMAGE ? { userImageVar: 'PROXYCHECK_SQUID_IMAGE' } : {}),
  });
}
