/**
 * `validate --origins live` with routes found as the agents find them: `--pac`, `--proxy auto`
 * (WPAD), `--no-proxy`. Never the internet: as in validate-live.test.ts, a lab serves the hosts of
 * fixtures/live, the lab root plays the public web PKI (PROXYCHECK_PUBLIC_ROOTS) and the proxy
 * resolves the catalog hosts to the lab. Loopback only; no DNS query ever (every CLI run has
 * PROXYCHECK_OS_RESOLVER=off: a name without a --resolve entry does not resolve). The WPAD server
 * listens on 127.54.0.1:80 (127.54.0.0/16 is no lab net: tests use 150–254, the CLI 77; the lab
 * mode PAC tests use 127.53.0.x).
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Ajv } from 'ajv';
import addFormats from 'ajv-formats';
import t, { type Test } from 'tap';
import type { CheckResult, RunReport } from '../harness/model.ts';
import { chainPlain } from '../harness/proxies/chain.ts';
import { cli } from './helpers/cli.ts';
import { LIVE_LAB_HOSTS, startProxy, testLab } from './helpers/fixtures.ts';
import { labNet } from './helpers/lab-net.ts';
import { listening, scriptServer } from './helpers/script-server.ts';

t.setTimeout(400_000);

const LIVE = fileURLToPath(new URL('../fixtures/live/', import.meta.url));
const SCHEMA = JSON.parse(
  readFileSync(new URL('../scenarios/schema/result.schema.json', import.meta.url), 'utf8'),
);
const ajv = new Ajv({ strict: false, allErrors: true });
addFormats.default(ajv);
const validReport = ajv.compile(SCHEMA);
const WPAD_AT = '127.54.0.1';

// one lab for the whole file, on a net held until the file ends
const { lab, runDir, pki } = await testLab(t, await labNet(t), LIVE_LAB_HOSTS);
const plain = await startProxy(t, chainPlain(), lab, runDir);
const PROXY = `127.0.0.1:${plain.port}`;
const ENV = { PROXYCHECK_PUBLIC_ROOTS: pki.labRoot.cert.certFile, PROXYCHECK_OS_RESOLVER: 'off' };

function tmp(t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'proxycheck-test-vpaclive-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** `proxycheck validate --origins live` of fixtures/live, with its JSON report. */
async function live(t: Test, args: string[]) {
  const json = join(tmp(t), 'report.json');
  const r = await cli(['validate', '--origins', 'live', '--scenarios', LIVE, '--json', json, ...args], {
    env: ENV,
    timeoutMs: 150_000,
  });
  let report: RunReport | undefined;
  try {
    report = JSON.parse(readFileSync(json, 'utf8')) as RunReport;
  } catch {
    // no report: the test asserts on r
  }
  const of = (endpoint: string): CheckResult[] =>
    (report?.results ?? []).filter((x) => x.endpoint === endpoint);
  return { ...r, report, of };
}

/** The rows with a host that the proxy checks (every row of livelab but pinned, which goes DIRECT). */
const PROXIED = [
  'open.live.test:443',
  'nobump.live.test:443',
  'stream.live.test:13000',
  'broker.live.test:8883',
  'replication.live.test:2222',
  'repo.live.test:80',
];

t.test('a PAC file in live mode: proxied rows checked through its proxy, DIRECT rows skipped', async (t) => {
  const pac = join(tmp(t), 'corp.pac');
  writeFileSync(
    pac,
    `function FindProxyForURL(url, host) {\n  if (shExpMatch(host, "pinned.*")) return "DIRECT";\n  return "PROXY ${PROXY}";\n}\n`,
  );
  const r = await live(t, ['--pac', pac]);
  t.equal(r.code, 0, r.stdout + r.stderr);
  const lines = r.stdout.split('\n');
  t.equal(lines[0], `PAC ${pac}: 6 hosts → PROXY ${PROXY}, 1 host → DIRECT`, 'the routes found come first');
  t.equal(lines[1], '  not asked for 2 rows without a host: --tenant ID, --param region=VALUE not given');
  t.ok(validReport(r.report), ajv.errorsText(validReport.errors));
  const id = `pac:${PROXY}`;
  t.same(
    r.report?.proxies.map((p) => p.id),
    [id, 'direct', 'not-routed'],
  );
  t.match(r.report?.proxies[0], {
    url: `http://${PROXY}`,
    discovery: { method: 'pac', proxy: PROXY, source: pac },
  });
  t.same(r.report?.proxies[0]?.discovery?.hosts.map((h) => h.url).sort(), [
    'http://repo.live.test/',
    'https://broker.live.test:8883/',
    'https://nobump.live.test/',
    'https://open.live.test/',
    'https://replication.live.test:2222/',
    'https://stream.live.test:13000/',
  ]);
  for (const e of PROXIED) {
    const rs = r.of(e);
    t.ok(rs.length >= 3, `${e}: every check ran`);
    t.ok(
      rs.every((x) => x.proxy === id && x.matched),
      `${e}: checked through ${id}, every result as expected`,
    );
    t.equal(
      rs.find((x) => x.check === (e.endsWith(':80') ? 'forward' : 'connect'))?.outcome,
      'pass',
      `${e}: through the proxy`,
    );
  }
  t.match(
    r.of('open.live.test:443').find((x) => x.check === 'tls-interception'),
    { outcome: 'pass' },
  );
  const pinned = r.of('pinned.live.test:443');
  t.equal(pinned.length, 1, 'one result for the DIRECT row');
  t.match(pinned[0], {
    id: 'direct/livelab/pinned.live.test:443/route',
    proxy: 'direct',
    profile: 'livelab',
    check: 'route',
    outcome: 'skip',
    matched: true,
    evidence: { method: 'pac', answer: 'DIRECT', source: pac },
    message:
      /^the route is DIRECT by the PAC script: PAC .* answers "DIRECT" for https:\/\/pinned\.live\.test\/; no proxy on this route to validate$/,
  });
  t.match(r.report?.proxies[1], { kind: 'direct', discovery: { method: 'direct' } });
  t.match(r.of('agent-{tenant}.live.test:443'), [
    {
      proxy: 'not-routed',
      outcome: 'skip',
      matched: true,
      message: /^needs --tenant ID for agent-\{tenant\}\.live\.test; not checked/,
    },
  ]);
  t.match(r.stdout, /\nOK: all \d+ results as expected\n/);
});

t.test(
  '--proxy URL --no-proxy in live mode: the bypassed host DIRECT, the rest through the proxy',
  async (t) => {
    const r = await live(t, ['--proxy', plain.url, '--no-proxy', 'repo.*', '--tenant', 'acme']);
    t.equal(r.code, 0, r.stdout + r.stderr);
    t.equal(
      r.stdout.split('\n')[0],
      `configured proxy ${PROXY}: 7 hosts → PROXY ${PROXY}, 1 host → DIRECT (--no-proxy)`,
    );
    t.same(
      r.report?.proxies.map((p) => p.id),
      ['external', 'direct'],
      'the configured proxy keeps its id; a row missing a parameter goes with it',
    );
    t.match(r.of('repo.live.test:80'), [
      { proxy: 'direct', outcome: 'skip', evidence: { method: 'configured', bypass: 'repo.*' } },
    ]);
    t.equal(r.of('agent-acme.live.test:443').find((x) => x.check === 'connect')?.outcome, 'pass');
    t.match(
      r.of('api.{region}.live.test:443').find((x) => x.check === 'connect'),
      {
        proxy: 'external',
        outcome: 'skip',
        message: /needs --param region=VALUE/,
      },
    );
  },
);

t.test('--proxy auto in live mode: WPAD through --resolve, its proxy named by name', async (t) => {
  const named = `proxy.corp.test:${plain.port}`;
  const wpad = await scriptServer(t, WPAD_AT, 80, {
    '/wpad.dat': `function FindProxyForURL(url, host) {\n  if (host == "replication.live.test") return "DIRECT";\n  return "PROXY ${named}; DIRECT";\n}\n`,
  });
  const r = await live(t, [
    '--proxy',
    'auto',
    '--dns-suffix',
    'corp.test',
    '--resolve',
    `wpad.corp.test:${WPAD_AT}`,
    '--resolve',
    'proxy.corp.test:127.0.0.1',
    '--tenant',
    'acme',
    '--param',
    'region=eu',
  ]);
  t.equal(r.code, 0, r.stdout + r.stderr);
  t.equal(
    r.stdout.split('\n')[0],
    `WPAD http://wpad.corp.test/wpad.dat: 8 hosts → PROXY ${named}, 1 host → DIRECT`,
  );
  t.ok(validReport(r.report), ajv.errorsText(validReport.errors));
  t.same(
    r.report?.proxies.map((p) => p.id),
    [`wpad:${named}`, 'direct'],
  );
  t.match(r.report?.proxies[0], {
    url: `http://${PROXY}`,
    discovery: { method: 'wpad', proxy: named, source: 'http://wpad.corp.test/wpad.dat' },
  });
  for (const e of ['agent-acme.live.test:443', 'api.eu.live.test:443', 'open.live.test:443'])
    t.equal(r.of(e).find((x) => x.check === 'connect')?.outcome, 'pass', e);
  t.match(r.of('replication.live.test:2222'), [
    {
      proxy: 'direct',
      outcome: 'skip',
      message: /^the route is DIRECT by WPAD: WPAD http:\/\/wpad\.corp\.test\/wpad\.dat answers "DIRECT"/,
    },
  ]);
  await wpad.close();
  t.notOk(await listening(WPAD_AT, 80), 'the WPAD server is gone');
});

t.test('a script that cannot be used in live mode: one line, exit 2, never DIRECT', async (t) => {
  const dir = tmp(t);
  const throws = join(dir, 'throws.pac');
  writeFileSync(throws, 'function FindProxyForURL(url, host) { throw new Error("boom"); }');
  const r = await live(t, ['--pac', throws]);
  t.equal(r.code, 2);
  t.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
  t.match(
    r.stderr.trim(),
    /^proxycheck: PAC .*throws\.pac: FindProxyForURL\("https:\/\/\S+\/", "\S+\.live\.test"\): FindProxyForURL threw .*boom/,
  );
  t.notMatch(r.stderr, /\n\s+at /, 'no stack trace');
  t.equal(r.stdout, '', 'nothing checked');
  t.notOk(r.report, 'no report');
});
