/**
 * `validate --origins live`, tested against a lab — never the internet. The lab serves the hosts
 * of fixtures/live (a test catalog with one row per case), the lab root plays the public web PKI
 * (PROXYCHECK_PUBLIC_ROOTS), and the proxies resolve catalog hosts to the lab, as a proxy in front
 * of the internet resolves them through DNS. proxycheck itself runs as a user would (the CLI).
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Ajv } from 'ajv';
import addFormats from 'ajv-formats';
import t, { type Test } from 'tap';
import { CORPORATE_CA_CN, LAB_ROOT_CN } from '../harness/lab/pki.ts';
import type { CheckResult, RunReport } from '../harness/model.ts';
import { ChainProxy, chainMitm, chainPlain } from '../harness/proxies/chain.ts';
import { cli } from './helpers/cli.ts';
import { LIVE_LAB_HOSTS, startProxy, testLab } from './helpers/fixtures.ts';
import { labNet } from './helpers/lab-net.ts';

// many CLI runs and real proxies: on a loaded 2-core machine this takes minutes
t.setTimeout(400_000);

const LIVE = fileURLToPath(new URL('../fixtures/live/', import.meta.url));
const RESULT_SCHEMA = JSON.parse(
  readFileSync(new URL('../scenarios/schema/result.schema.json', import.meta.url), 'utf8'),
);

// one lab for the whole file, on a net held until the file ends
const { lab, runDir, pki } = await testLab(t, await labNet(t), LIVE_LAB_HOSTS);
const plain = await startProxy(t, chainPlain(), lab, runDir);
const mitm = await startProxy(t, chainMitm(), lab, runDir);
const auth = await startProxy(t, new ChainProxy({ auth: true }), lab, runDir);
const ENV = { PROXYCHECK_PUBLIC_ROOTS: pki.labRoot.cert.certFile };

async function live(t: Test, proxyUrl: string, extra: string[] = []) {
  const dir = mkdtempSync(join(tmpdir(), 'proxycheck-live-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const json = join(dir, 'report.json');
  const r = await cli(
    ['validate', '--origins', 'live', '--proxy', proxyUrl, '--scenarios', LIVE, '--json', json, ...extra],
    { env: ENV, timeoutMs: 150_000 },
  );
  let report: RunReport | undefined;
  try {
    report = JSON.parse(readFileSync(json, 'utf8')) as RunReport;
  } catch {
    // no report: the test asserts on r
  }
  const get = (endpoint: string, check: string): CheckResult | undefined =>
    report?.results.find((x) => x.endpoint === endpoint && x.check === check);
  return { ...r, report, get };
}

function schemaValid(t: Test, report: RunReport | undefined): void {
  const ajv = new Ajv({ strict: false });
  addFormats.default(ajv);
  t.ok(ajv.validate(RESULT_SCHEMA, report), JSON.stringify(ajv.errors));
}

const TLS_ROWS = [
  'open.live.test:443',
  'nobump.live.test:443',
  'pinned.live.test:443',
  'agent-acme.live.test:443',
  'stream.live.test:13000',
  'broker.live.test:8883',
];

t.test('an open proxy passes every row it can check; rows missing a parameter are skipped', async (t) => {
  const r = await live(t, plain.url, ['--tenant', 'acme']);
  t.equal(r.code, 0, r.stderr + r.stdout);
  schemaValid(t, r.report);
  for (const e of TLS_ROWS) {
    t.equal(r.get(e, 'connect')?.outcome, 'pass', `${e} connect`);
    t.equal(r.get(e, 'tls-interception')?.outcome, 'pass', `${e} tls-interception`);
    t.match(r.get(e, 'tls-interception')?.message, `chaining to public root "${LAB_ROOT_CN}"`);
  }
  t.match(
    r.get('open.live.test:443', 'connect')?.message,
    /HEAD \/ inside the verified session answered "HTTP\/1\.1 200 OK"/,
  );
  t.notMatch(r.get('stream.live.test:13000', 'connect')?.message, /HEAD/, 'tls rows: handshake only');
  t.equal(r.get('pinned.live.test:443', 'pinning')?.outcome, 'pass');
  t.equal(r.get('open.live.test:443', 'pinning')?.outcome, 'skip', 'pinning applies to pinned rows only');
  t.equal(r.get('replication.live.test:2222', 'connect')?.outcome, 'pass');
  t.equal(r.get('replication.live.test:2222', 'tls-interception')?.outcome, 'skip', 'tcp: CONNECT only');
  t.equal(r.get('repo.live.test:80', 'connect'), undefined, 'http rows: forward, not connect');
  const repo = r.get('repo.live.test:80', 'forward');
  t.equal(repo?.outcome, 'pass');
  t.match(repo?.evidence, { request: /^HEAD http:\/\/repo\.live\.test\/ HTTP\/1\.1\r\n/ });
  const region = r.get('api.{region}.live.test:443', 'connect');
  t.equal(region?.outcome, 'skip');
  t.equal(region?.expected, 'skip');
  t.match(region?.message, 'needs --param region=VALUE for api.{region}.live.test; not checked');
  t.notOk(
    r.report?.results.some((x) => x.endpoint.startsWith('discovery.')),
    'out-of-scope rows are left out',
  );
  t.notMatch(r.stdout, /Remediation/, 'nothing to fix, no remediation section');
  t.equal(r.report?.remediation, undefined);
});

t.test('without --tenant the tenant rows are skipped; --param fills the others', async (t) => {
  const r = await live(t, plain.url, ['--param', 'region=eu']);
  t.equal(r.code, 0, r.stderr);
  t.equal(r.get('api.eu.live.test:443', 'tls-interception')?.outcome, 'pass');
  t.match(r.get('agent-{tenant}.live.test:443', 'connect')?.message, 'needs --tenant ID');
});

t.test('an intercepting proxy is caught, naming the re-signing CA', async (t) => {
  const r = await live(t, mitm.url, ['--tenant', 'acme']);
  t.equal(r.code, 1, r.stderr);
  schemaValid(t, r.report);
  for (const e of TLS_ROWS) {
    const v = r.get(e, 'tls-interception');
    t.equal(v?.outcome, 'fail', `${e}: the agents do not trust the inspection CA`);
    t.match(
      v?.message,
      `TLS intercepted: certificate for ${e.split(':')[0]} issued by "${CORPORATE_CA_CN}", not a public CA`,
    );
    t.match(v?.evidence, { reSignedBy: new RegExp(`CN=${CORPORATE_CA_CN}`), agentTrusts: false });
  }
  t.equal(r.get('pinned.live.test:443', 'pinning')?.outcome, 'fail');
  t.equal(r.get('replication.live.test:2222', 'connect')?.outcome, 'pass', 'a tcp row is not judged on TLS');
  t.match(r.stdout, /\nRemediation\n/);
  const rem = r.report?.remediation?.[0];
  t.same(
    rem?.noInspect.map((n) => [n.host, n.pinned]),
    [
      ['nobump.live.test', false],
      ['pinned.live.test', true],
    ],
  );
  t.same(
    rem?.untrustedInspection.map((n) => n.host),
    ['agent-acme.live.test', 'broker.live.test', 'open.live.test', 'stream.live.test'],
  );
  // it says nothing that names its product: product-neutral steps, no squid.conf lines
  t.equal(r.report?.proxies[0]?.product?.id, 'unknown');
  t.notMatch(r.stdout, /acl proxycheck_nobump|squid\.conf/, 'no squid lines for a product we cannot name');
  t.match(
    r.stdout,
    /Exclude from TLS inspection \(SSL bump \/ HTTPS inspection bypass list\) [^\n]*nobump\.live\.test/,
  );
  t.match(r.stdout, `Deploy the inspection CA "${CORPORATE_CA_CN}" to the agents' trust store`);
});

t.test('with --trust-ca of the inspection CA only pinned and must-not-inspect rows fail', async (t) => {
  const r = await live(t, mitm.url, [
    '--tenant',
    'acme',
    '--param',
    'region=eu',
    '--trust-ca',
    pki.corporate.cert.certFile,
  ]);
  t.equal(r.code, 1, r.stderr);
  const failing = [...new Set(r.report?.results.filter((x) => x.outcome === 'fail').map((x) => x.endpoint))];
  t.same(failing.sort(), ['nobump.live.test:443', 'pinned.live.test:443']);
  t.equal(r.get('pinned.live.test:443', 'pinning')?.outcome, 'fail');
  for (const e of ['open.live.test:443', 'api.eu.live.test:443', 'stream.live.test:13000']) {
    const v = r.get(e, 'tls-interception');
    t.equal(v?.outcome, 'warn', `${e}: inspected, allowed, agents trust the CA`);
    t.match(v?.message, 'the agents trust it (--trust-ca)');
  }
  t.match(r.get('open.live.test:443', 'connect')?.message, /HEAD \/ inside the verified session answered/);
  t.same(r.report?.remediation?.[0]?.untrustedInspection, []);
});

t.test('wrong credentials: a 407 verdict on every row and the credentials remedy', async (t) => {
  const wrong = auth.url.replace('http://', 'http://agent:not-the-password@');
  const r = await live(t, wrong, ['--tenant', 'acme']);
  t.equal(r.code, 1, r.stderr);
  t.notMatch(r.stderr, /error|\n\s+at /i, 'a verdict, not an error');
  const connects =
    r.report?.results.filter((x) => ['connect', 'forward'].includes(x.check) && x.outcome !== 'skip') ?? [];
  t.ok(connects.length >= 8);
  for (const c of connects) {
    t.equal(c.outcome, 'fail', c.endpoint);
    t.match(c.message, /answered "HTTP\/1\.1 407 /);
  }
  t.ok(
    connects.some((c) => c.check === 'forward' && c.endpoint === 'repo.live.test:80'),
    'the http row too',
  );
  t.same(r.report?.remediation?.[0]?.credentials.length, connects.length);
  t.match(r.stdout, /Give the agents proxy credentials: the proxy answered 407/);
  t.notMatch(r.stdout + r.stderr, /not-the-password/, 'password never printed');
});

t.test('bad input and an unreachable proxy: one line, exit 2, no stack trace', async (t) => {
  const cases: Array<[string[], RegExp, Record<string, string>?]> = [
    [['--proxy', 'not a url'], /--proxy must be a URL/],
    [['--proxy', 'http://127.0.0.1:9'], /proxy 127\.0\.0\.1:9 unreachable: .*ECONNREFUSED/],
    [['--proxy', plain.url, '--origins', 'moon'], /--origins must be lab or live/],
    [['--proxy', plain.url, '--catalogs', 'nope'], /unknown catalog "nope" \(known: livelab, all\)/],
    [['--proxy', plain.url, '--profiles', 'x'], /with --origins live choose --catalogs/],
    [['--proxy', plain.url, '--idle-seconds', '60'], /--idle-seconds needs the lab origins/],
    [['--proxy', plain.url, '--param', 'region'], /--param must be name=value/],
    [['--proxy', plain.url, '--param', 'planet=mars'], /unknown host parameter "planet"/],
    [['--proxy', plain.url, '--param', 'region=a/b'], /cannot be part of a host name/],
    [['--proxy', plain.url, '--trust-ca', '/nonexistent.pem'], /--trust-ca \/nonexistent\.pem: ENOENT/],
    [
      ['--proxy', plain.url],
      /PROXYCHECK_PUBLIC_ROOTS \/nonexistent\.pem: ENOENT/,
      { PROXYCHECK_PUBLIC_ROOTS: '/nonexistent.pem' },
    ],
  ];
  for (const [args, msg, env] of cases) {
    const r = await cli(['validate', '--origins', 'live', '--scenarios', LIVE, ...args], {
      env: env ?? ENV,
      timeoutMs: 150_000,
    });
    t.equal(r.code, 2, args.join(' '));
    t.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    t.match(r.stderr, msg);
    t.notMatch(r.stderr, /\n\s+at /, 'no stack trace');
  }
  const labParam = await cli(['validate', '--proxy', plain.url, '--param', 'region=eu']);
  t.equal(labParam.code, 2);
  t.match(labParam.stderr, /--param is for --origins live/);
  const idle = await cli(['validate', '--proxy', plain.url, '--idle-seconds', '-5']);
  t.equal(idle.code, 2);
  t.match(idle.stderr, /--idle-seconds must be a positive number of seconds, not "-5"/);
});
