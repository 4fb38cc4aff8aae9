#!/usr/bin/env node
// Launcher. Two layouts, told apart by what sits next to this file:
//  - a source checkout (../harness/cli/main.ts exists): runs the TypeScript sources through tsx's
//    loader (a devDependency), so `npx proxycheck` works right after `npm ci`, with no build step
//    and never a stale dist/ (a dist/ left by `npm run build` or `npm pack` is ignored here);
//  - the installed package (no harness/ in its files): runs the compiled JavaScript in ../dist/,
//    with no TypeScript loader at run time.
// PROXYCHECK_DIST=1 makes a checkout run its dist/ too (after `npm run build`).
import { existsSync } from 'node:fs';

const sources = new URL('../harness/cli/main.ts', import.meta.url);
const compiled = new URL('../dist/cli/main.js', import.meta.url);

let main;
if (existsSync(sources) && process.env.PROXYCHECK_DIST !== '1') {
  const { register } = await import('tsx/esm/api');
  register();
  ({ main } = await import(sources.href));
} else if (existsSync(compiled)) {
  ({ main } = await import(compiled.href));
} else {
  process.stderr.write(`proxycheck: ${compiled.pathname} is missing: run \`npm run build\` first\n`);
  process.exit(4);
}
process.exitCode = await main(process.argv.slice(2));
