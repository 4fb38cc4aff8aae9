import { cpSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Test } from 'tap';
import { FIXTURE_SCENARIOS } from './fixtures.ts';

/**
 * A temporary copy of fixtures/scenarios, removed when the test ends; `files` are written into it
 * (relative path → content, or null to delete that file).
 */
export function scenarioCopy(t: Test, files: Record<string, string | null> = {}): string {
  const dir = mkdtempSync(join(tmpdir(), 'proxycheck-scen-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  cpSync(FIXTURE_SCENARIOS, dir, { recursive: true });
  for (const [path, content] of Object.entries(files)) {
    if (content === null) rmSync(join(dir, path));
    else writeFileSync(join(dir, path), content);
  }
  return dir;
}

/** A temporary directory for output files, removed when the test ends. */
export function outDir(t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'proxycheck-out-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}
