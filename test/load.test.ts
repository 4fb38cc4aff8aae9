/**
 * `proxycheck load` over real sockets: simulated agents through a real proxy (in-process
 * proxy-chain from a definition, and raw test proxies that misbehave) against the lab. Asserts the
 * JSON against its schema, percentiles per phase, a capacity verdict that holds on a good proxy and
 * breaks on one whose idle timer drops held tunnels and on one that caps its tunnels (step mode:
 * the knee), the CLI's output, bad input and the HTML page in Chromium.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Ajv } from 'ajv';
import addFormats from 'ajv-formats';
import { chromium } from 'playwright-core';
import t, { type Test } from 'tap';
import { labAddress } from '../harness/lab/addresses.ts';
import { parseMix } from '../harness/load/model.ts';
import { DEFAULT_SLO, type LoadOptions, runLoad } from '../harness/load/run.ts';
import { proxyById } from '../harness/proxies/registry.ts';
import type { ProxyUnderTest } from '../harness/proxies/types.ts';
import { loadScenarios } from '../harness/scenarios.ts';
import { cli } from './helpers/cli.ts';
import { labNet } from './helpers/lab-net.ts';
import { parseConnect, readHead, startRawProxy } from './helpers/raw-proxy.ts';
import { requireComponent } from './helpers/requirements.ts';
import { listening } from './helpers/script-server.ts';

const schema = JSON.parse(
  readFileSync(new URL('../scenarios/schema/load.schema.json', import.meta.url), 'utf8'),
);
const ajv = new Ajv({ strict: false, allErrors: true });
addFormats.default(ajv);
const validateLoad = ajv.compile(schema);

const set = loadScenarios();
const base = (net: number, more: Partial<LoadOptions>): LoadOptions => ({
  proxy: proxyById('chain-plain', { scenarios: set }),
  scenarios: set,
  mix: parseMix('flexxagent=70,flexx-analyzer=10,remote-assistance=10,vpro-cira=10', set),
  steps: [30],
  durationSeconds: 4,
  rampSeconds: 1,
  timeScale: 0.1,
  labNet: net,
  slo: DEFAULT_SLO,
  ...more,
});

/** A chain definition (a file, as a user gives one) whose idle timer closes tunnels silent for 1 s. */
function idleOneSecond(t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'proxycheck-load-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'idle-1s.yaml');
  writeFileSync(file, 'id: idle-1s\nengine: chain\nidleTimeoutSeconds: 1\n');
  return file;
}

t.test('30 agents through chain-plain: every phase measured, sustained, nothing left running', async (t) => {
  const n = await labNet(t);
  const r = await runLoad(base(n, {}));
  t.ok(validateLoad(r), JSON.stringify(validateLoad.errors));
  const step = r.steps[0];
  if (!step) throw new Error('no step');
  for (const p of ['tcp', 'connect', 'tls', 'firstByte', 'upload', 'keepalive'] as const) {
    const q = step.phases[p];
    t.ok(q && q.count > 0, `${p} measured (${q?.count})`);
    t.ok(q && q.p50 <= q.p90 && q.p90 <= q.p99 && q.p99 <= q.max, `${p} percentiles ordered`);
  }
  // 21 FlexxAgents, 3 Analyzer hosts (3 upload sessions each), 3 remote-assistance tunnels and 3
  // vPro devices (one CIRA tunnel each: mutual TLS, APF)
  t.same(
    r.mix.map((m) => [m.profile, m.agents]),
    [
      ['flexxagent', 21],
      ['flexx-analyzer', 3],
      ['remote-assistance', 3],
      ['vpro-cira', 3],
    ],
  );
  t.equal(step.sessions, 21 + 9 + 3 + 3, 'one session per planned session, none reopened');
  t.same(
    r.mix.find((m) => m.profile === 'vpro-cira')?.sessions.map((p) => `${p.kind} ${p.host}:${p.port}`),
    ['cira iagent.flexxible.com:443'],
  );
  t.equal(step.drops, 0);
  t.same(step.errors, []);
  t.ok(step.windows.length >= 4, `a window per second (${step.windows.length})`);
  t.ok(r.capacity.sustained);
  t.match(
    r.capacity.verdict,
    /^sustains 30 agents with p99 connect under 1000 ms, no errors, no drops \(p99 connect [\d.]+ ms\)$/,
  );
  t.match(
    r.mix
      .find((m) => m.profile === 'flexxagent')
      ?.notSimulated.map((x) => x.exchange)
      .join(','),
    /mqtt-ws/,
    'what is not simulated is said',
  );
  const ra = labAddress('ras.flexxible.com', n);
  t.notOk(await listening(ra, 443), 'the lab is stopped after the run');
});

t.test('an idle timer below the keep-alive gap drops held tunnels: not sustained', async (t) => {
  const n = await labNet(t);
  const file = idleOneSecond(t);
  const scenarios = loadScenarios();
  const r = await runLoad(
    base(n, {
      proxy: proxyById(file, { scenarios }),
      scenarios,
      // remote assistance keeps its tunnel alive every 5 s, vPro every 30 s: 2.5 s and 15 s here,
      // over the proxy's 1 s
      mix: parseMix('remote-assistance=1,vpro-cira=1', scenarios),
      steps: [4],
      timeScale: 0.5,
      durationSeconds: 4,
    }),
  );
  t.ok(validateLoad(r), JSON.stringify(validateLoad.errors));
  const step = r.steps[0];
  t.ok(step && step.drops >= 4, `every tunnel dropped at least once (${step?.drops})`);
  t.equal(step?.phases.keepalive, undefined, 'no keep-alive came back');
  t.ok(step && step.drops <= step.sessions, 'drops are tunnels that were open');
  t.same(
    step?.errors.map((e) => e.class),
    ['tunnel dropped'],
    'nothing else went wrong',
  );
  t.notOk(r.capacity.sustained);
  t.match(r.capacity.verdict, /^broke at 4 agents: .*held tunnels dropped/);
  t.match(
    step?.errors.find((e) => e.class === 'tunnel dropped')?.example,
    /ras\.flexxible\.com:443: the tunnel closed/,
  );
});

t.test('vPro CIRA tunnels under an idle timer below their keep-alive gap: each one dropped', async (t) => {
  const n = await labNet(t);
  const file = idleOneSecond(t);
  const scenarios = loadScenarios();
  // a KEEPALIVE_REQUEST every 30 s is 15 s here: the proxy closes the silent tunnel after 1 s, and
  // the device waits one interval before it reconnects (after the run)
  const r = await runLoad(
    base(n, {
      proxy: proxyById(file, { scenarios }),
      scenarios,
      mix: parseMix('vpro-cira', scenarios),
      steps: [3],
      timeScale: 0.5,
      durationSeconds: 3,
    }),
  );
  const step = r.steps[0];
  t.equal(step?.sessions, 3, 'three devices set their CIRA tunnel up (mutual TLS, APF)');
  t.equal(step?.drops, 3, 'and each was dropped');
  t.same(
    step?.errors.map((e) => e.class),
    ['tunnel dropped'],
  );
  t.match(step?.errors[0]?.example, /^iagent\.flexxible\.com:443: the tunnel closed/);
});

/** A proxy that holds at most `cap` tunnels at once and answers 503 beyond (a licence or pool limit). */
function cappedProxy(n: number, cap: number): ProxyUnderTest {
  return {
    id: `capped-${cap}`,
    describe: () => `a proxy holding at most ${cap} tunnels`,
    start: () => {
      let open = 0;
      return startRawProxy(`capped-${cap}`, (client, raw) =>
        readHead(client, (head, rest) => {
          const target = parseConnect(head);
          if (!target) return void client.end('HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n');
          if (open >= cap)
            return void client.end('HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n');
          open++;
          client.once('close', () => open--);
          const up = raw.dial(labAddress(target.host, n), Number(target.port), () => {
            client.write('HTTP/1.1 200 Connection established\r\n\r\n');
            if (rest.length) up.write(rest);
            client.pipe(up).pipe(client);
            client.resume();
          });
          up.on('close', () => client.destroy());
        }),
      );
    },
  };
}

t.test('step mode: rising counts until the SLO breaks, the knee reported', async (t) => {
  const n = await labNet(t);
  const r = await runLoad(
    base(n, {
      proxy: cappedProxy(n, 12),
      mix: parseMix('flexxagent', set),
      steps: [5, 10, 30, 60],
      durationSeconds: 2,
      rampSeconds: 0.5,
    }),
  );
  t.ok(validateLoad(r), JSON.stringify(validateLoad.errors));
  t.same(
    r.steps.map((s) => [s.agents, s.sustained]),
    [
      [5, true],
      [10, true],
      [30, false],
    ],
    'stops at the first step that breaks',
  );
  t.equal(r.capacity.agents, 10);
  t.equal(r.capacity.brokeAt, 30);
  const broke = r.steps[2];
  t.equal(broke?.errors.find((e) => e.class === 'connect 503')?.count, 18, '18 of 30 agents refused');
  t.match(
    r.capacity.verdict,
    /^sustains 10 agents with .*; broke at 30 agents: error rate .* \(mostly connect 503: CONNECT .*503 Service Unavailable\)$/,
  );
});

t.test('the CLI: summary, JSON, HTML in Chromium, bad input in one line', async (t) => {
  const n = await labNet(t);
  const dir = mkdtempSync(join(tmpdir(), 'proxycheck-load-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const [json, html] = [join(dir, 'load.json'), join(dir, 'load.html')];
  const args = ['load', '--proxies', 'chain-plain', '--agents', '10', '--duration', '3', '--ramp', '1'];
  const r = await cli([...args, '--lab-net', String(n), '--json', json, '--html', html]);
  t.equal(r.code, 0, r.stderr);
  t.match(r.stdout.split('\n')[0], /^sustains 10 agents with p99 connect under 1000 ms/);
  t.match(r.stdout, /^ {2}connect +p50 [\d.]+ ms +p90 [\d.]+ ms +p99 [\d.]+ ms +max [\d.]+ ms +\(\d+\)$/m);
  t.ok(validateLoad(JSON.parse(readFileSync(json, 'utf8'))), 'the JSON file is proxycheck/load@1');
  t.ok(existsSync(html));

  const strict = await cli([...args, '--lab-net', String(n), '--slo-p99', 'connect=0.001']);
  t.equal(strict.code, 1, 'an SLO the proxy misses exits 1');
  t.match(strict.stdout, /^broke at 10 agents: p99 connect [\d.]+ ms over 0\.001 ms/);

  for (const [bad, message] of [
    [['load', '--agents', '5'], /^proxycheck: load: give --proxies <definition> or --proxy <url>$/],
    [
      ['load', '--proxies', 'chain-plain', '--agents', '0'],
      /--agents must be a whole number of at least 1, not "0"/,
    ],
    [['load', '--proxies', 'chain-plain', '--mix', 'nope=1'], /--mix: unknown profile "nope"/],
    [
      ['load', '--proxies', 'chain-plain', '--mix', 'kaspersky'],
      /--mix: profile kaspersky has no traffic simulated under load/,
    ],
    [['load', '--proxies', 'chain-plain', '--slo-p99', 'dns=5'], /--slo-p99: "dns=5" is not phase=ms/],
    [['load', '--proxies', 'down-direct'], /load: proxy down-direct is not there \(refused\)/],
    [
      ['load', '--proxy', 'http://127.0.0.1:1'],
      /^proxycheck: proxy 127\.0\.0\.1:1 unreachable: connect ECONNREFUSED$/,
    ],
    [
      ['load', '--proxy', 'http://127.0.0.1:1', '--proxies', 'chain-plain'],
      /--proxies.* cannot be used with .*--proxy/,
    ],
  ] as Array<[string[], RegExp]>) {
    const b = await cli([...bad, '--lab-net', String(n)]);
    t.equal(b.code, 2, `${bad.join(' ')}: exit 2`);
    t.equal(b.stderr.trim().split('\n').length, 1, `${bad.join(' ')}: one line (${b.stderr.trim()})`);
    t.match(b.stderr.trim(), message);
  }

  const skip = requireComponent(
    t,
    'chromium',
    existsSync('/usr/bin/chromium') ? undefined : 'no /usr/bin/chromium',
  );
  if (skip.skip) return;
  const browser = await chromium.launch({ executablePath: '/usr/bin/chromium' });
  t.teardown(() => browser.close());
  const page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
  const problems: string[] = [];
  page.on('console', (m) => {
    if (m.type() === 'error') problems.push(m.text());
  });
  page.on('pageerror', (e) => problems.push(String(e)));
  page.on('request', (req) => {
    if (!req.url().startsWith('file:') && !req.url().startsWith('data:'))
      problems.push(`fetched ${req.url()}`);
  });
  await page.goto(`file://${html}`);
  await page.waitForSelector('canvas');
  t.equal(await page.locator('canvas').count(), 2, 'the percentile chart and the latency-over-time chart');
  t.match(await page.locator('#capacity').textContent(), /^sustains 10 agents/);
  t.same(problems, [], 'no CSP violation, no script error, nothing fetched');
});
