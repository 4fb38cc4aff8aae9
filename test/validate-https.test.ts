/**
 * `validate --proxy https://... --proxy-ca FILE` against a squid configured by hand here (our own
 * squid.conf lines, certificates made with the openssl CLI, not the lab PKI): one https_port with a
 * certificate for 127.0.0.1 from the given CA passes; the same proxy with another CA given, and a
 * second https_port whose certificate names another host, stop in one line saying so; a missing,
 * non-PEM or misplaced --proxy-ca is a one-line error.
 */
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { labAddress } from '../harness/lab/addresses.ts';
import type { RunReport } from '../harness/model.ts';
import { runCommand } from '../harness/proxies/toolkit/command.ts';
import { pickPort } from '../harness/proxies/toolkit/ports.ts';
import { waitForListening } from '../harness/proxies/toolkit/ready.ts';
import { cli, cliReport, printed } from './helpers/cli.ts';
import { FIXTURE_SCENARIOS, fixtureScenarios, LIVE_LAB_HOSTS, testLab } from './helpers/fixtures.ts';
import { baseConf, STOCK_POLICY, startSquid } from './helpers/hand-squid.ts';
import { labNet } from './helpers/lab-net.ts';
import { requireComponent, squidProblem } from './helpers/requirements.ts';

const squid = requireComponent(t, 'squid', squidProblem());
const LIVE = fileURLToPath(new URL('../fixtures/live/', import.meta.url));

function hostsFile(net: number): string {
  const lines = new Set<string>();
  for (const c of fixtureScenarios().catalogs.values())
    for (const e of c.endpoints) lines.add(`${labAddress(e.host, net)}\t${e.host}`);
  return [...lines].join('\n') + '\n';
}

async function openssl(args: string[]): Promise<void> {
  const r = await runCommand('openssl', args, { what: `openssl ${args[0]}`, timeoutMs: 20_000 });
  if (r.code !== 0) throw new Error(`openssl ${args.join(' ')}: ${r.stderr}`);
}

/** A CA, and leaves from it with the given subjectAltName; every file readable by squid's user. */
async function makeCerts(dir: string) {
  const ca = async (name: string) => {
    await openssl(
      ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', `/CN=${name}`]
        .concat(['-keyout', join(dir, `${name}.key`), '-out', join(dir, `${name}.crt`)])
        .concat(['-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign']),
    );
  };
  await ca('hand-ca');
  await ca('other-ca');
  const leaf = async (name: string, san: string) => {
    const ext = join(dir, `${name}.ext`);
    writeFileSync(ext, `subjectAltName=${san}\nextendedKeyUsage=serverAuth\n`);
    await openssl(
      ['req', '-newkey', 'rsa:2048', '-nodes', '-subj', `/CN=${name}`].concat([
        '-keyout',
        join(dir, `${name}.key`),
        '-out',
        join(dir, `${name}.csr`),
      ]),
    );
    await openssl(
      ['x509', '-req', '-in', join(dir, `${name}.csr`), '-days', '2', '-extfile', ext]
        .concat(['-CA', join(dir, 'hand-ca.crt'), '-CAkey', join(dir, 'hand-ca.key'), '-set_serial', '7'])
        .concat(['-out', join(dir, `${name}.crt`)]),
    );
    chmodSync(join(dir, `${name}.key`), 0o644); // a test key, read by squid's user
  };
  await leaf('proxy-ip', 'IP:127.0.0.1');
  await leaf('proxy-other', 'DNS:elsewhere.example');
}

t.test('validate an https:// proxy with --proxy-ca', { ...squid, timeout: 120_000 }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'proxycheck-test-vhttps-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  chmodSync(dir, 0o755);
  await makeCerts(dir);
  const [good, wrongName] = [await pickPort(), await pickPort()];
  const net = await labNet(t);
  await startSquid(t, hostsFile(net), (d, port) =>
    baseConf(d, port, [
      `https_port 127.0.0.1:${good} tls-cert=${dir}/proxy-ip.crt tls-key=${dir}/proxy-ip.key generate-host-certificates=off`,
      `https_port 127.0.0.1:${wrongName} tls-cert=${dir}/proxy-other.crt tls-key=${dir}/proxy-other.key generate-host-certificates=off`,
      ...STOCK_POLICY,
      'http_access allow localhost',
      'http_access deny all',
    ]),
  );
  await waitForListening(good, 10_000, 'https_port');
  await waitForListening(wrongName, 10_000, 'https_port');
  const common = ['validate', '--scenarios', FIXTURE_SCENARIOS, '--profiles', 'unpinned', '--lab-net'];

  const json = join(dir, 'report.json');
  const ok = await cli(
    [
      ...common,
      String(net),
      '--proxy',
      `https://127.0.0.1:${good}`,
      '--proxy-ca',
      `${dir}/hand-ca.crt`,
    ].concat(['--json', json]),
    { timeoutMs: 90_000 },
  );
  t.equal(ok.code, 0, `${ok.stdout.slice(-1500)}\n${ok.stderr.slice(-1500)}`);
  const report = JSON.parse(readFileSync(json, 'utf8')) as RunReport;
  t.equal(report.proxies[0]?.url, `https://127.0.0.1:${good}`);
  t.ok(
    report.results.some((r) => r.check === 'connect' && r.outcome === 'pass'),
    'CONNECT through TLS passed',
  );

  const cases: Array<[string[], RegExp]> = [
    [
      ['--proxy', `https://127.0.0.1:${good}`, '--proxy-ca', `${dir}/other-ca.crt`],
      new RegExp(`proxy 127\\.0\\.0\\.1:${good}: its certificate is not trusted \\(by --proxy-ca\\): `),
    ],
    [
      ['--proxy', `https://127.0.0.1:${wrongName}`, '--proxy-ca', `${dir}/hand-ca.crt`],
      new RegExp(
        `proxy 127\\.0\\.0\\.1:${wrongName}: its certificate is not for 127\\.0\\.0\\.1: .*altnames`,
      ),
    ],
    [
      ['--proxy', `https://127.0.0.1:${good}`, '--proxy-ca', `${dir}/missing.crt`],
      /--proxy-ca .*missing\.crt: ENOENT/,
    ],
    [['--proxy', `https://127.0.0.1:${good}`, '--proxy-ca', `${dir}/proxy-ip.ext`], /not a PEM certificate/],
    [
      ['--proxy', `http://127.0.0.1:${good}`, '--proxy-ca', `${dir}/hand-ca.crt`],
      /--proxy-ca is for an https:\/\/ proxy/,
    ],
  ];
  for (const [args, msg] of cases) {
    const r = await cli([...common, String(net), ...args], { timeoutMs: 60_000 });
    t.equal(r.code, 2, args.join(' '));
    t.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    t.match(r.stderr, msg);
    t.notMatch(r.stderr, /\n\s+at /, 'no stack trace');
  }
});

t.test(
  'validate --origins live through an https:// proxy with --proxy-ca',
  { ...squid, timeout: 180_000 },
  async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'proxycheck-test-vhttps-live-'));
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    chmodSync(dir, 0o755);
    await makeCerts(dir);
    // the lab plays the internet for fixtures/live, the lab root the public web PKI; the proxy
    // resolves the live hosts to the lab, as a proxy in front of the internet does through DNS
    const net = await labNet(t);
    const { pki } = await testLab(t, net, LIVE_LAB_HOSTS);
    const hosts = `${LIVE_LAB_HOSTS.map((h) => `${labAddress(h.host, net)}\t${h.host}`).join('\n')}\n`;
    const port = await pickPort();
    await startSquid(t, hosts, (d, p) =>
      baseConf(d, p, [
        `https_port 127.0.0.1:${port} tls-cert=${dir}/proxy-ip.crt tls-key=${dir}/proxy-ip.key generate-host-certificates=off`,
        ...STOCK_POLICY,
        'http_access allow localhost',
        'http_access deny all',
      ]),
    );
    await waitForListening(port, 10_000, 'https_port');
    // validate --origins live through the proxy, as a customer runs it
    const live = (args: string[], timeoutMs = 150_000) =>
      cliReport(t, ['validate', '--origins', 'live', '--scenarios', LIVE, ...args], {
        env: { PROXYCHECK_PUBLIC_ROOTS: pki.labRoot.cert.certFile },
        timeoutMs,
      });
    const proxy = ['--proxy', `https://127.0.0.1:${port}`, '--proxy-ca', `${dir}/hand-ca.crt`];
    const r = await live(proxy);
    // stock squid refuses CONNECT to 13000, 8883 and 2222: a red report, not an error
    t.equal(r.code, 1, printed(r));
    const report = r.report as RunReport;
    t.equal(report.proxies[0]?.url, `https://127.0.0.1:${port}`);
    const get = (endpoint: string, check: string) =>
      report.results.find((x) => x.endpoint === endpoint && x.check === check);
    for (const e of ['open.live.test:443', 'pinned.live.test:443']) {
      t.equal(get(e, 'connect')?.outcome, 'pass', `${e} connect through TLS to the proxy`);
      t.equal(get(e, 'tls-interception')?.outcome, 'pass', `${e}: the origin's own certificate`);
    }
    t.match(get('open.live.test:443', 'connect')?.message, /HEAD \/ inside the verified session answered/);
    t.equal(
      get('stream.live.test:13000', 'connect')?.outcome,
      'fail',
      'the stock policy still refuses 13000',
    );
    t.match(get('stream.live.test:13000', 'connect')?.message, /answered "HTTP\/1\.1 403 Forbidden"/);

    // with --no-proxy the routes are found per row first (validate-runs.ts): the proxy is still TLS
    const routed = await live([...proxy, '--no-proxy', 'repo.live.test']);
    t.equal(routed.code, 1, printed(routed));
    const second = routed.report as RunReport;
    t.equal(
      second.results.find((x) => x.endpoint === 'open.live.test:443' && x.check === 'connect')?.outcome,
      'pass',
      'open.live.test:443 through the https:// proxy found for it',
    );

    // a CA that did not sign the proxy's certificate, and TLS to a port that does not speak it
    const plainPort = await pickPort();
    const plain = createServer((c) => c.destroy());
    await new Promise<void>((done) => plain.listen(plainPort, '127.0.0.1', done));
    t.teardown(() => plain.close());
    const cases: Array<[string[], RegExp]> = [
      [
        ['--proxy', `https://127.0.0.1:${port}`, '--proxy-ca', `${dir}/other-ca.crt`],
        new RegExp(`proxy 127\\.0\\.0\\.1:${port}: its certificate is not trusted \\(by --proxy-ca\\): `),
      ],
      [
        ['--proxy', `https://127.0.0.1:${plainPort}`, '--proxy-ca', `${dir}/hand-ca.crt`],
        new RegExp(`proxy 127\\.0\\.0\\.1:${plainPort}: no TLS to it: `),
      ],
    ];
    for (const [args, msg] of cases) {
      const bad = await live(args, 60_000);
      t.equal(bad.code, 2, args.join(' '));
      t.equal(bad.stderr.trim().split('\n').length, 1, bad.stderr);
      t.match(bad.stderr, msg);
      t.notMatch(bad.stderr, /\n\s+at /, 'no stack trace');
    }
  },
);
