/**
 * The Artillery engine (packages/artillery-engine-proxycheck) run by Artillery's own CLI, as a user
 * runs it: proxycheck built (tsc, as the package is), `proxycheck serve` giving a lab proxy, and
 * `artillery run` with proxycheck agents as virtual users. Through chain-plain every virtual user
 * completes with each phase measured and the proxy's flow log showing their tunnels; through
 * chain-mitm (agents that do not trust its inspection CA) they fail, counted by error class.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { foreground } from './helpers/cli.ts';
import { labNet } from './helpers/lab-net.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const UP = 'proxy is up; Ctrl-C stops it';

function run(
  cmd: string,
  args: string[],
  cwd: string,
  deadlineMs: number,
): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, {
      cwd,
      env: { ...process.env, ARTILLERY_DISABLE_TELEMETRY: 'true', NO_COLOR: '1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${cmd} ${args.join(' ')}: not done within ${deadlineMs} ms: ${out.slice(-2000)}`));
    }, deadlineMs);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, out });
    });
  });
}

interface Aggregate {
  counters: Record<string, number>;
  summaries: Record<string, { count: number; p99: number }>;
}

t.test('artillery run with the proxycheck engine through lab proxies', async (t) => {
  // proxycheck as the published package is built: compiled JavaScript, beside dist/ so that its
  // scenarios/ and package.json are where the build expects them
  const build = join(ROOT, `.artillery-build-${process.pid}`);
  t.teardown(() => rmSync(build, { recursive: true, force: true }));
  const tsc = await run(
    process.execPath,
    [join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.build.json', '--outDir', build],
    ROOT,
    120_000,
  );
  t.equal(tsc.code, 0, `tsc: ${tsc.out}`);
  const dir = mkdtempSync(join(tmpdir(), 'proxycheck-artillery-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));

  const serve = async (proxy: string) => {
    const flowLog = join(dir, `${proxy}.jsonl`);
    const s = await foreground(
      t,
      [
        'serve',
        proxy,
        '--lab-net',
        String(await labNet(t)),
        '--profiles',
        'remote-assistance,flexxagent',
        '--flow-log',
        flowLog,
      ],
      UP,
    );
    const url = /^proxy URL: (\S+)$/m.exec(s.stdout())?.[1] ?? '';
    const ca = /^lab root CA .*: (\S+)$/m.exec(s.stdout())?.[1] ?? '';
    return { url, ca, flowLog };
  };
  const [plain, mitm] = await Promise.all([serve('chain-plain'), serve('chain-mitm')]);

  const artillery = async (name: string, proxy: { url: string; ca: string }) => {
    const script = join(dir, `${name}.yml`);
    writeFileSync(
      script,
      [
        'config:',
        `  target: ${proxy.url}`,
        '  phases:',
        '    - duration: 2',
        '      arrivalRate: 5',
        '  engines:',
        '    proxycheck:',
        `      ca: [${proxy.ca}]`,
        '      timeScale: 0.1',
        `      module: ${join(build, 'load/api.js')}`,
        'scenarios:',
        '  - engine: proxycheck',
        '    profile: remote-assistance',
        '    seconds: 3',
        '  - engine: proxycheck',
        '    profile: flexxagent',
        '    seconds: 3',
        '',
      ].join('\n'),
    );
    const report = join(dir, `${name}.json`);
    const r = await run(
      join(ROOT, 'node_modules/.bin/artillery'),
      ['run', script, '--output', report],
      dir,
      180_000,
    );
    t.equal(r.code, 0, `artillery run ${name}: ${r.out.slice(-1500)}`);
    return (JSON.parse(readFileSync(report, 'utf8')) as { aggregate: Aggregate }).aggregate;
  };
  const [good, bad] = await Promise.all([artillery('plain', plain), artillery('mitm', mitm)]);

  t.equal(good.counters['vusers.created'], 10, 'ten virtual users');
  t.equal(good.counters['vusers.completed'], 10, 'all completed through chain-plain');
  t.equal(good.counters['vusers.failed'] ?? 0, 0);
  // Artillery picks each virtual user's scenario at random: each scenario's phases are asserted
  // when it ran (both did in all but 2 of 1,024 runs)
  const ran = (i: number) => (good.counters[`vusers.created_by_name.${i}`] ?? 0) > 0;
  const phases = [
    'tcp',
    'connect',
    'tls',
    ...(ran(0) ? ['keepalive'] : []),
    ...(ran(1) ? ['firstByte', 'upload'] : []),
  ];
  for (const phase of phases)
    t.ok((good.summaries[`proxycheck.${phase}`]?.count ?? 0) > 0, `proxycheck.${phase} measured`);
  if (ran(0)) t.ok((good.counters['proxycheck.keepalives'] ?? 0) > 0, 'held tunnels kept alive');
  if (ran(1)) t.ok((good.counters['proxycheck.requests'] ?? 0) > 0, 'reports sent');
  const flows = readFileSync(plain.flowLog, 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as { target?: string });
  t.equal(
    flows.filter((f) => f.target === 'ras.flexxible.com:443').length,
    good.counters['vusers.created_by_name.0'] ?? 0,
    'the proxy saw one remote-assistance tunnel per such agent',
  );
  t.ok(
    flows.filter((f) => f.target === 'west-eu.agent-api.analyzer.flexxible.com:443').length >=
      (good.counters['vusers.created_by_name.1'] ?? 0),
    "and the FlexxAgents' report tunnels",
  );

  t.equal(bad.counters['vusers.failed'], 10, 'every virtual user fails through an inspecting proxy');
  t.ok(
    (bad.counters['errors.tls'] ?? 0) >= 10,
    `counted as TLS errors (${bad.counters['errors.tls']}): the agents refuse the re-signed certificate`,
  );
  t.same(
    Object.keys(bad.counters).filter((k) => k.startsWith('errors.')),
    ['errors.tls'],
    'and nothing else',
  );
});
