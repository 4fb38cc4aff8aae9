import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** A private per-run directory (mode 0700) for keys, configs and logs; removed by `remove()`. */
export class RunDir {
  readonly path: string;
  constructor(prefix = 'proxycheck-') {
    this.path = mkdtempSync(join(tmpdir(), prefix));
  }
  file(name: string): string {
    return join(this.path, name);
  }
  remove(): void {
    rmSync(this.path, { recursive: true, force: true });
  }
}
