/**
 * `proxycheck validate --pac URL|FILE`, `--proxy auto` (WPAD) and `--no-proxy`: routes found per
 * vendor host as the agent finds them, each proxy found validated, DIRECT hosts reported. Real
 * sockets on loopback only: a proxy-chain server we did not start through an adapter (fed the lab
 * hosts), a WPAD server on 127.53.0.x:80, PAC files. No DNS query ever: every CLI run has
 * PROXYCHECK_OS_RESOLVER=off, so a name without a --resolve entry does not resolve.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Ajv } from 'ajv';
import addFormats from 'ajv-formats';
import t, { type Test } from 'tap';
import { labAddress } from '../harness/lab/addresses.ts';
import type { RunReport } from '../harness/model.ts';
import { cli } from './helpers/cli.ts';
import { customerProxy } from './helpers/customer-proxy.ts';
import { FIXTURE_SCENARIOS, fixtureScenarios } from './helpers/fixtures.ts';
import { labNet } from './helpers/lab-net.ts';
import { listening, scriptServer } from './helpers/script-server.ts';

t.setTimeout(400_000);

const SCHEMA = JSON.parse(
  readFileSync(new URL('../scenarios/schema/result.schema.json', import.meta.url), 'utf8'),
);
const ajv = new Ajv({ strict: false, allErrors: true });
addFormats.default(ajv);
const validReport = ajv.compile(SCHEMA);

/** The fixture hosts: open (443), pinned (443), odd-port (13000); one profile each. */
const OPEN = 'open.proxycheck.test';
const PINNED = 'pinned.proxycheck.test';
const ODD = 'odd-port.proxycheck.test';
/** Where this file's WPAD servers listen: 127.53.0.0/16 is no lab net (tests use 150–254, the CLI 77). */
const WPAD_AT = ['127.53.0.1', '127.53.0.2'];

/** A temporary directory for the test. */
function tmp(t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'proxycheck-test-vpac-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A lab net and a proxy-chain server that knows the fixture hosts at their addresses on it. */
async function proxyAndNet(t: Test): Promise<{ net: number; proxy: string }> {
  const n = await labNet(t);
  const table = new Map<string, string>();
  for (const c of fixtureScenarios().catalogs.values())
    for (const e of c.endpoints) table.set(e.host, labAddress(e.host, n));
  return { net: n, proxy: await customerProxy(t, (h) => table.get(h)) };
}

/** A port on 127.0.0.1 where nothing listens (bound, then closed). */
async function closedPort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/** `proxycheck validate` of the fixture scenarios, OS resolver off, with its JSON report. */
async function validate(t: Test, args: string[]) {
  const dir = tmp(t);
  const json = join(dir, 'report.json');
  const r = await cli(['validate', '--scenarios', FIXTURE_SCENARIOS, '--json', json, ...args], {
    timeoutMs: 150_000,
    env: { PROXYCHECK_OS_RESOLVER: 'off' },
  });
  let report: RunReport | undefined;
  try {
    report = JSON.parse(readFileSync(json, 'utf8')) as RunReport;
  } catch {
    // the test asserts on r
  }
  return { ...r, report };
}

const resultsOf = (report: RunReport | undefined, host: string) =>
  (report?.results ?? []).filter((r) => r.endpoint.startsWith(`${host}:`));

t.test('a PAC file: proxied hosts validated through the proxy it names, DIRECT ones skipped', async (t) => {
  const { net: n, proxy } = await proxyAndNet(t);
  const dir = tmp(t);
  const pac = join(dir, 'corp.pac');
  writeFileSync(
    pac,
    `function FindProxyForURL(url, host) {\n  if (shExpMatch(host, "pinned.*")) return "DIRECT";\n  return "PROXY ${proxy}";\n}\n`,
  );
  const junit = join(dir, 'report.xml');
  const tapFile = join(dir, 'report.tap');
  const r = await validate(t, ['--pac', pac, '--lab-net', String(n), '--junit', junit, '--tap', tapFile]);
  t.equal(r.code, 0, r.stdout + r.stderr);
  t.equal(
    r.stdout.split('\n')[0],
    `PAC ${pac}: 2 hosts → PROXY ${proxy}, 1 host → DIRECT`,
    'the routes found come first',
  );
  t.match(r.stdout, /\nOK: all \d+ results as expected\n/);
  const report = r.report;
  t.ok(validReport(report), ajv.errorsText(validReport.errors));
  const id = `pac:${proxy}`;
  t.same(
    report?.proxies.map((p) => p.id),
    [id, 'direct'],
  );
  const viaProxy = report?.proxies[0];
  t.match(viaProxy?.discovery, { method: 'pac', proxy, source: pac });
  t.same(viaProxy?.discovery?.hosts.map((h) => h.host).sort(), [ODD, OPEN]);
  t.match(viaProxy?.discovery?.hosts[0], { method: 'pac', answer: `PROXY ${proxy}`, source: pac });
  const direct = report?.proxies[1];
  t.match(direct, { kind: 'direct', discovery: { method: 'direct' } });
  t.match(direct?.discovery?.hosts, [
    { host: PINNED, url: `https://${PINNED}/`, method: 'pac', answer: 'DIRECT', source: pac },
  ]);
  for (const host of [OPEN, ODD]) {
    const rs = resultsOf(report, host);
    t.ok(rs.length > 1, `${host}: every check ran`);
    t.ok(
      rs.every((x) => x.proxy === id && x.matched && x.outcome !== 'fail'),
      `${host}: validated through ${id}, every result as expected`,
    );
    t.ok(
      rs.some((x) => x.check === 'payload' && x.outcome === 'pass'),
      `${host}: its payload went through the proxy`,
    );
  }
  const pinned = resultsOf(report, PINNED);
  t.equal(pinned.length, 1, 'one result for the DIRECT exchange');
  t.match(pinned[0], {
    id: `direct/pinned/${PINNED}:443/route`,
    proxy: 'direct',
    check: 'route',
    outcome: 'skip',
    matched: true,
    evidence: { method: 'pac', answer: 'DIRECT', source: pac },
  });
  t.match(
    pinned[0]?.message,
    /^the route is DIRECT by the PAC script: PAC .* answers "DIRECT" for https:\/\/pinned\.proxycheck\.test\/; .*no proxy on this route to validate$/,
  );
  t.match(readFileSync(junit, 'utf8'), `name="${id}"`);
  t.match(readFileSync(tapFile, 'utf8'), `# proxy ${id}: kind external`);
  t.match(
    readFileSync(tapFile, 'utf8'),
    /ok \d+ - direct\/pinned\/pinned\.proxycheck\.test:443\/route # SKIP/,
  );
});

t.test(
  '--proxy auto: WPAD through --resolve; with --pac, WPAD first and the script when WPAD finds none',
  async (t) => {
    const { net: n, proxy } = await proxyAndNet(t);
    const dir = tmp(t);
    // WPAD's script names the proxy by a name only --resolve knows
    const named = `proxy.corp.test:${proxy.split(':')[1]}`;
    const wpadScript = `function FindProxyForURL(url, host) {\n  if (host == "${ODD}") return "DIRECT";\n  return "PROXY ${named}; DIRECT";\n}\n`;
    const wpad = await scriptServer(t, WPAD_AT[0] as string, 80, { '/wpad.dat': wpadScript });
    const pac = join(dir, 'fallback.pac');
    writeFileSync(pac, `function FindProxyForURL(url, host) { return "PROXY ${proxy}"; }\n`);
    const auto = [
      '--proxy',
      'auto',
      '--dns-suffix',
      'corp.test',
      '--resolve',
      `wpad.corp.test:${WPAD_AT[0]}`,
      '--resolve',
      'proxy.corp.test:127.0.0.1',
    ];

    const byWpad = await validate(t, [...auto, '--lab-net', String(n)]);
    t.equal(byWpad.code, 0, byWpad.stdout + byWpad.stderr);
    t.equal(
      byWpad.stdout.split('\n')[0],
      `WPAD http://wpad.corp.test/wpad.dat: 2 hosts → PROXY ${named}, 1 host → DIRECT`,
    );
    t.same(
      byWpad.report?.proxies.map((p) => p.id),
      [`wpad:${named}`, 'direct'],
    );
    t.match(byWpad.report?.proxies[0], {
      url: `http://${proxy}`,
      discovery: { method: 'wpad', proxy: named, source: 'http://wpad.corp.test/wpad.dat' },
    });
    t.match(resultsOf(byWpad.report, ODD)[0], {
      outcome: 'skip',
      message: /^the route is DIRECT by WPAD: WPAD http:\/\/wpad\.corp\.test\/wpad\.dat answers "DIRECT"/,
    });
    t.ok(
      resultsOf(byWpad.report, OPEN).every(
        (x) => x.matched && x.outcome !== 'fail' && x.proxy === `wpad:${named}`,
      ),
    );

    // both: WPAD finds a script, so it decides (the --pac script would send odd-port to the proxy)
    const both = await validate(t, ['--pac', pac, ...auto, '--lab-net', String(n)]);
    t.equal(both.code, 0, both.stdout + both.stderr);
    t.match(both.stdout.split('\n')[0], /^WPAD http:\/\/wpad\.corp\.test\/wpad\.dat: /);
    t.same(
      both.report?.proxies.map((p) => p.id),
      [`wpad:${named}`, 'direct'],
    );

    // WPAD finds nothing (wpad.other.test has no --resolve entry): the --pac script decides
    const fallback = await validate(t, [
      '--pac',
      pac,
      '--proxy',
      'auto',
      '--dns-suffix',
      'other.test',
      '--lab-net',
      String(n),
    ]);
    t.equal(fallback.code, 0, fallback.stdout + fallback.stderr);
    const [first, second] = fallback.stdout.split('\n');
    t.match(
      first,
      /^WPAD found no proxy script \(wpad\.other\.test does not resolve .*\): the --pac script decides$/,
    );
    t.equal(second, `PAC ${pac}: 3 hosts → PROXY ${proxy}`);
    t.same(
      fallback.report?.proxies.map((p) => p.id),
      [`pac:${proxy}`],
    );

    // WPAD finds nothing and there is no --pac: every host DIRECT, said so, nothing replayed
    const none = await validate(t, ['--proxy', 'auto', '--dns-suffix', 'other.test', '--lab-net', String(n)]);
    t.equal(none.code, 0, none.stdout + none.stderr);
    t.match(
      none.stdout.split('\n')[0],
      /^WPAD found no proxy script \(wpad\.other\.test does not resolve .*\): 3 hosts → DIRECT$/,
    );
    t.same(
      none.report?.results.map((x) => [x.proxy, x.outcome]),
      [
        ['direct', 'skip'],
        ['direct', 'skip'],
        ['direct', 'skip'],
      ],
    );
    t.match(none.report?.results[0]?.message, /^the route is DIRECT by WPAD: WPAD found no proxy script/);

    await wpad.close();
    t.notOk(await listening(WPAD_AT[0] as string, 80), 'the WPAD server is gone');
  },
);

t.test("a dead first PROXY entry: the next one is the route, the first one's failure said", async (t) => {
  const { net: n, proxy } = await proxyAndNet(t);
  const dead = await closedPort();
  const dir = tmp(t);
  const pac = join(dir, 'dead-first.pac');
  writeFileSync(
    pac,
    `function FindProxyForURL(url, host) {\n  if (host == "${PINNED}") return "SOCKS5 127.0.0.1:1080; PROXY 127.0.0.1:${dead}";\n  return "PROXY 127.0.0.1:${dead}; PROXY ${proxy}";\n}\n`,
  );
  const r = await validate(t, ['--pac', pac, '--lab-net', String(n)]);
  t.equal(r.code, 1, 'a host with no route that works is a failure');
  const lines = r.stdout.split('\n');
  t.equal(lines[0], `PAC ${pac}: 2 hosts → PROXY ${proxy}, 1 host → no route (no entry works)`);
  t.match(
    r.stdout,
    new RegExp(
      `\\n {2}passed over PROXY 127\\.0\\.0\\.1:${dead} for 3 hosts: unreachable: connect ECONNREFUSED 127\\.0\\.0\\.1:${dead}\\n`,
    ),
  );
  t.match(r.stdout, /\n {2}passed over SOCKS5 127\.0\.0\.1:1080 for 1 host: not supported by the agent/);
  t.same(
    r.report?.proxies.map((p) => p.id),
    [`pac:${proxy}`, 'no-route'],
  );
  t.match(r.report?.proxies[0]?.discovery?.hosts[0]?.tried, [
    { route: `PROXY 127.0.0.1:${dead}`, outcome: /^unreachable: connect ECONNREFUSED/ },
  ]);
  t.ok(
    resultsOf(r.report, OPEN).every((x) => x.matched && x.outcome !== 'fail' && x.proxy === `pac:${proxy}`),
    'open goes through the second proxy',
  );
  t.match(resultsOf(r.report, PINNED), [
    {
      proxy: 'no-route',
      check: 'route',
      outcome: 'fail',
      matched: false,
      message:
        /^no route: PAC .* answers "SOCKS5 127\.0\.0\.1:1080; PROXY 127\.0\.0\.1:\d+" .*no entry works: SOCKS5 127\.0\.0\.1:1080 \(not supported by the agent.*\), PROXY 127\.0\.0\.1:\d+ \(unreachable: connect ECONNREFUSED/,
    },
  ]);
});

t.test('a script that cannot be used: one line, exit 2, no stack trace, never DIRECT', async (t) => {
  const dir = tmp(t);
  const server = await scriptServer(t, '127.0.0.1', 0, {});
  const file = (name: string, text: string) => {
    const f = join(dir, name);
    writeFileSync(f, text);
    return f;
  };
  const cases: Array<[string[], RegExp]> = [
    [
      ['--pac', `http://127.0.0.1:${server.port}/proxy.pac`],
      /^proxycheck: PAC http:\/\/127\.0\.0\.1:\d+\/proxy\.pac could not be fetched: answered "HTTP\/1\.1 404 Not Found"$/,
    ],
    [
      ['--pac', 'http://pac.corp.test/proxy.pac'],
      /^proxycheck: PAC http:\/\/pac\.corp\.test\/proxy\.pac could not be fetched: pac\.corp\.test does not resolve/,
    ],
    [
      ['--proxy', 'auto', '--dns-suffix', 'corp.test', '--resolve', `wpad.corp.test:${WPAD_AT[1]}`],
      // nothing listens on 127.53.0.2:80: WPAD's name resolves, its script cannot be fetched
      /^proxycheck: WPAD http:\/\/wpad\.corp\.test\/wpad\.dat could not be fetched: /,
    ],
    [
      ['--pac', file('throws.pac', 'function FindProxyForURL(url, host) { throw new Error("boom"); }')],
      /^proxycheck: PAC .*throws\.pac: FindProxyForURL\("https:\/\/\S+\/", "\S+"\): FindProxyForURL threw .*boom/,
    ],
    [
      ['--pac', file('syntax.pac', 'function FindProxyForURL(url, host) { return "DIRECT" ')],
      /^proxycheck: PAC .*syntax\.pac does not load: .*SyntaxError/,
    ],
    [
      ['--pac', file('loops.pac', 'function FindProxyForURL(url, host) { for (;;) {} }')],
      /^proxycheck: PAC .*loops\.pac: .*gave no answer within 2000 ms/,
    ],
    [
      ['--pac', file('answer.pac', 'function FindProxyForURL(url, host) { return "PRXY 10.0.0.1:3128"; }')],
      /^proxycheck: PAC .*answer\.pac: .* answered something that does not parse: entry "PRXY 10\.0\.0\.1:3128": unknown keyword PRXY/,
    ],
  ];
  for (const [args, msg] of cases) {
    const r = await validate(t, args);
    t.equal(r.code, 2, args.join(' '));
    t.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    t.match(r.stderr.trim(), msg);
    t.notMatch(r.stderr, /\n\s+at /, 'no stack trace');
    t.equal(r.stdout, '', 'nothing validated');
    t.notOk(r.report, 'no report');
  }
});

t.test('--no-proxy makes hosts DIRECT before the proxy or the script is asked', async (t) => {
  const { net: n, proxy } = await proxyAndNet(t);
  const configured = await validate(t, [
    '--proxy',
    `http://${proxy}`,
    '--no-proxy',
    'pinned.*;<local>',
    '--lab-net',
    String(n),
  ]);
  t.equal(configured.code, 0, configured.stdout + configured.stderr);
  t.equal(
    configured.stdout.split('\n')[0],
    `configured proxy ${proxy}: 2 hosts → PROXY ${proxy}, 1 host → DIRECT (--no-proxy)`,
  );
  t.same(
    configured.report?.proxies.map((p) => p.id),
    ['external', 'direct'],
    'the configured proxy keeps its id',
  );
  t.match(configured.report?.proxies[0]?.discovery, { method: 'configured', proxy });
  t.match(resultsOf(configured.report, PINNED), [
    {
      proxy: 'direct',
      outcome: 'skip',
      evidence: { method: 'configured', bypass: 'pinned.*' },
      message: /^the route is DIRECT by --no-proxy: --no-proxy pinned\.\* matches pinned\.proxycheck\.test; /,
    },
  ]);

  const dir = tmp(t);
  const pac = join(dir, 'all.pac');
  writeFileSync(pac, `function FindProxyForURL(url, host) { return "PROXY ${proxy}"; }\n`);
  const scripted = await validate(t, [
    '--pac',
    pac,
    '--no-proxy',
    `${ODD}`,
    '--no-proxy',
    '*.example',
    '--lab-net',
    String(n),
  ]);
  t.equal(scripted.code, 0, scripted.stdout + scripted.stderr);
  t.equal(
    scripted.stdout.split('\n')[0],
    `PAC ${pac}: 2 hosts → PROXY ${proxy}, 1 host → DIRECT (--no-proxy)`,
  );
  t.match(resultsOf(scripted.report, ODD), [
    {
      proxy: 'direct',
      outcome: 'skip',
      evidence: { method: 'pac', bypass: ODD },
      message: /: the script is not asked; no proxy on this route to validate$/,
    },
  ]);
  t.notOk(
    scripted.report?.proxies.find((p) => p.id === 'direct')?.discovery?.hosts[0]?.answer,
    'no answer: the script was not asked',
  );
});

t.test(
  'what to validate: neither --proxy nor --pac, or ones that do not go together: one line, exit 2',
  async (t) => {
    const cases: Array<[string[], RegExp]> = [
      [[], /^proxycheck: which proxy\? give --proxy URL, --proxy auto \(WPAD\) or --pac URL\|FILE$/],
      [
        ['--proxy', 'http://127.0.0.1:9', '--pac', '/nonexistent.pac'],
        /--pac goes alone, or with --proxy auto/,
      ],
      [
        ['--origins', 'live', '--pac', '/nonexistent.pac'],
        /^proxycheck: PAC \/nonexistent\.pac could not be read: /,
      ],
      [['--proxy', 'http://127.0.0.1:9', '--dns-suffix', 'corp.test'], /--dns-suffix is for --proxy auto/],
      [
        ['--pac', '/nonexistent.pac', '--resolve', 'wpad.corp.test'],
        /--resolve "wpad\.corp\.test": expected host:address/,
      ],
      [
        ['--pac', '/nonexistent.pac', '--no-proxy', '<-loopback>'],
        /--no-proxy: "<-loopback>" is not a pattern/,
      ],
      [['--proxy', 'auto', '--dns-suffix', 'http://x'], /--dns-suffix "http:\/\/x" is not a DNS name/],
    ];
    for (const [args, msg] of cases) {
      const r = await cli(['validate', ...args], { env: { PROXYCHECK_OS_RESOLVER: 'off' } });
      t.equal(r.code, 2, args.join(' '));
      t.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
      t.match(r.stderr.trim(), msg);
      t.notMatch(r.stderr, /\n\s+at /, 'no stack trace');
    }
  },
);
