/**
 * Tests that need an outside component (squid, a container engine): locally a missing component
 * skips the test with a clear reason; in CI (CI=true) it fails, so a broken CI image cannot pass by
 * skipping everything.
 */
import { spawnSync } from 'node:child_process';
import { squidBinary } from '../../harness/proxies/squid/runtime.ts';
import { engineProblem } from '../../harness/proxies/toolkit/runtime.ts';

export const IN_CI = process.env.CI === 'true';

interface Reporter {
  fail(message: string): unknown;
}

/**
 * Tap options for a test needing `name`. `problem` is undefined when the component is there,
 * else why not. In CI a missing component is recorded as a failure on `t` (and the dependent test
 * is skipped, as it cannot run); locally the test is just skipped, naming what is missing.
 */
export function requireComponent(t: Reporter, name: string, problem: string | undefined): { skip?: string } {
  if (!problem) return {};
  if (IN_CI) {
    t.fail(`${name} is required in CI (CI=true) but missing: ${problem}`);
    return { skip: `${name} missing (failed above): ${problem}` };
  }
  return { skip: `${name} not available here: ${problem}` };
}

/** undefined when squid and its helpers are installed, else why not. */
export function squidProblem(): string | undefined {
  const bin = squidBinary();
  if (!bin) return 'squid is not installed (no /usr/sbin/squid; apt-get install squid-openssl)';
  const v = spawnSync(bin, ['-v'], { encoding: 'utf8' });
  if (v.status !== 0) return `${bin} -v failed`;
  if (!/--with-openssl|enable-ssl-crtd/.test(v.stdout))
    return `${bin} is built without OpenSSL (install squid-openssl)`;
  return undefined;
}

/** undefined when a container engine answers (through testcontainers), else why not. */
export async function containerEngineProblem(): Promise<string | undefined> {
  return engineProblem();
}
