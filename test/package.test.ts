/**
 * The published package, as a user gets it: `npm pack` (whose prepack runs `npm run build`), then
 * `npm install <tarball>` into an empty directory, then the installed `proxycheck` binary. It must
 * run the compiled JavaScript in dist/ with no TypeScript loader (tsx is a devDependency and never
 * installed), and find its scenarios/ and containers/ inside the package.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { labNet } from './helpers/lab-net.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const PKG = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { name: string; version: string };

interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs a command to its end, or kills it after `deadlineMs` (then signal is SIGKILL). */
function run(cmd: string, args: string[], opts: { cwd: string; deadlineMs: number }): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, {
      cwd: opts.cwd,
      stdio: ['ignore', 'pipe', 'pipe'],
      // the installed package must not lean on a loader from the test's own process
      env: { ...process.env, NODE_OPTIONS: '' },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => {
      stdout += d;
    });
    child.stderr.on('data', (d: Buffer) => {
      stderr += d;
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.deadlineMs);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

t.test('npm pack, npm install <tarball> in an empty directory, run the installed proxycheck', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'proxycheck-package-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const packDir = join(dir, 'pack');
  const appDir = join(dir, 'app');
  mkdirSync(packDir);

  const pack = await run('npm', ['pack', '--json', '--pack-destination', packDir], {
    cwd: ROOT,
    deadlineMs: 180_000,
  });
  t.equal(pack.code, 0, 'npm pack exits 0', { stderr: pack.stderr });
  const jsonStart = pack.stdout.search(/^\[$/m); // after anything the prepack build printed
  const [info] = JSON.parse(pack.stdout.slice(jsonStart)) as [
    { filename: string; files: { path: string }[] },
  ];
  const files = info.files.map((f) => f.path);
  for (const f of [
    'package.json',
    'bin/proxycheck.js',
    'dist/cli/main.js',
    'dist/scenarios.js',
    'scenarios/schema/result.schema.json',
    'scenarios/schema/profile.schema.json',
    'containers/squid/Dockerfile',
    'containers/base/build-offline-base.sh',
  ]) {
    t.ok(files.includes(f), `the package has ${f}`);
  }
  for (const prefix of ['harness/', 'test/', 'fixtures/', 'bench/', 'docs/']) {
    t.notOk(
      files.some((f) => f.startsWith(prefix)),
      `the package has nothing under ${prefix}`,
    );
  }

  // An empty project that installs the tarball; dependencies come from the npm cache or registry.
  mkdirSync(appDir);
  writeFileSync(join(appDir, 'package.json'), '{ "name": "proxycheck-user", "private": true }\n');
  const install = await run(
    'npm',
    ['install', '--no-audit', '--no-fund', '--prefer-offline', join(packDir, info.filename)],
    { cwd: appDir, deadlineMs: 300_000 },
  );
  t.equal(install.code, 0, 'npm install <tarball> exits 0', { stderr: install.stderr });
  const installed = join(appDir, 'node_modules', PKG.name);
  t.notOk(existsSync(join(appDir, 'node_modules', 'tsx')), 'tsx is not installed with the package');
  t.notOk(
    existsSync(join(appDir, 'node_modules', 'typescript')),
    'typescript is not installed with the package',
  );
  for (const js of ['dist/cli/main.js', 'dist/runner/run.js']) {
    const text = readFileSync(join(installed, js), 'utf8');
    t.notMatch(text, /from ['"]\.{1,2}\/[^'"]*\.ts['"]/, `${js} imports no .ts file`);
  }

  const bin = join(appDir, 'node_modules', '.bin', 'proxycheck');
  const version = await run(bin, ['--version'], { cwd: appDir, deadlineMs: 60_000 });
  t.equal(version.code, 0, 'proxycheck --version exits 0', { stderr: version.stderr });
  t.equal(version.stdout.trim(), PKG.version, 'proxycheck --version prints the package version');

  const list = await run(bin, ['list'], { cwd: appDir, deadlineMs: 60_000 });
  t.equal(list.code, 0, 'proxycheck list exits 0', { stderr: list.stderr });
  t.match(list.stdout, /chain-plain/, 'list names the proxies');
  t.match(list.stdout, /flexxagent-brazil/, 'list names the profiles (scenarios/ is in the package)');

  const net = String(await labNet(t));
  const small = await run(
    bin,
    ['run', '--proxies', 'chain-plain', '--profiles', 'flexxagent-brazil', '--lab-net', net],
    { cwd: appDir, deadlineMs: 300_000 },
  );
  t.equal(small.code, 0, 'proxycheck run exits 0', { stdout: small.stdout, stderr: small.stderr });
  t.match(small.stdout, /as expected, 0 not/, 'every result as expected');
});
