/**
 * `validate` through real proxies from Debian packages in their stock configuration
 * (test/helpers/debian-proxies.ts): the product is named from what it answers, the remedies are
 * that product's settings (never squid.conf lines for another product), and what it really does
 * with a Proxy-Authorization header on forwarded plain HTTP shows up as a finding with its fix.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import type { RunReport } from '../harness/model.ts';
import { SQUID_HELPER_DIR } from '../harness/proxies/squid/process.ts';
import { productRemedy } from '../harness/report/products/index.ts';
import { BIN, cli } from './helpers/cli.ts';
import {
  debianProxyProblem,
  labHostsFile,
  startApache,
  startPrivoxy,
  startTinyproxy,
  startTrafficServer,
  stockSquidConf,
} from './helpers/debian-proxies.ts';
import { baseConf, STOCK_POLICY, startSquid } from './helpers/hand-squid.ts';
import { labNet } from './helpers/lab-net.ts';
import { emptyRemediation } from './helpers/remediation.ts';
import { requireComponent, squidProblem } from './helpers/requirements.ts';

/** validate through `proxy` with credentials (sent preemptively, as Basic), its JSON report and stdout. */
async function validate(
  t: Test,
  net: number,
  proxy: { url: string },
  profiles: string,
): Promise<{ code: number | null; stdout: string; report: RunReport }> {
  const dir = mkdtempSync(join(tmpdir(), 'proxycheck-test-products-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const json = join(dir, 'report.json');
  const r = await cli(
    [
      'validate',
      '--proxy',
      proxy.url,
      '--proxy-user',
      'corp',
      '--lab-net',
      String(net),
      '--profiles',
      profiles,
      '--json',
      json,
    ],
    { env: { PROXYCHECK_PROXY_PASSWORD: 's3cr3t-pw' }, timeoutMs: 120_000 },
  );
  t.notOk(r.stdout.includes('s3cr3t-pw'), 'the password is never printed');
  return { code: r.code, stdout: r.stdout, report: JSON.parse(readFileSync(json, 'utf8')) as RunReport };
}

/** Every settings line the remediation gives for the proxy. */
const settingLines = (report: RunReport) =>
  (report.remediation ?? []).flatMap((r) => (r.settings ?? []).flatMap((x) => x.lines));

const apacheSkip = requireComponent(t, 'apache2', debianProxyProblem('/usr/sbin/apache2', 'apache2'));

t.test(
  'stock Debian apache2 with mod_proxy_connect: Apache httpd 2.4, AllowCONNECT, the leak',
  apacheSkip,
  async (t) => {
    const net = await labNet(t);
    const hosts = labHostsFile(BIN, net);
    const apache = await startApache(t, hosts);
    const { code, stdout, report } = await validate(t, net, apache, 'eset,vpro-cira');
    t.equal(code, 1, 'red: the stock policy refuses the agents');
    const product = report.proxies[0]?.product;
    t.equal(product?.id, 'apache-httpd');
    t.match(product?.version, /^2\.4\.\d+$/);
    t.equal(product?.confidence, 'high');
    t.match(
      product?.evidence.join('\n'),
      /"Server: Apache\/2\.4\.\d+[^"]*" in the CONNECT answer/,
      'from its own answer',
    );
    t.match(stdout, /^proxy external: .*Apache httpd 2\.4\.\d+$/m, 'named at the top');

    // the remedy is Apache's: AllowCONNECT keeping its default 443 563, never a squid.conf line
    const lines = settingLines(report);
    t.ok(
      lines.some((l) => /^AllowCONNECT 443 563 .*\b2222\b.*\b4433\b.*\b8883\b/.test(l)),
      `AllowCONNECT with the refused ports: ${lines.join(' | ')}`,
    );
    t.match(stdout, /^ {4}AllowCONNECT 443 563 2222 4433 8883$/m, 'printed ready to paste');
    t.same(report.remediation?.[0]?.squidConf, [], 'no squid.conf lines in the JSON');
    t.notMatch(stdout, /squid\.conf|acl SSL_ports|In squid/, 'no squid.conf line printed');

    // Apache passes on a Proxy-Authorization it did not use (measured here, not assumed)
    const leak = report.findings?.find((f) => f.cause === 'proxy-auth-leak');
    t.equal(leak?.severity, 'security', 'the leaked credential is a security finding');
    t.same(leak?.agents, ['eset']);
    t.match(
      leak?.title,
      /Proxy-Authorization forwarded to the origin of eset-repository\.proxycheck\.test:80/,
    );
    t.ok(
      leak?.settings?.some((s) => s.lines.includes('RequestHeader unset Proxy-Authorization')),
      'its fix is the Apache directive',
    );
    t.match(stdout, /^- \[security\] external: Proxy-Authorization forwarded/m);

    // mod_proxy_connect's answer is too loose for vPro's firmware, and no directive fixes that
    const strict = report.findings?.find((f) => f.cause === 'strict-connect');
    t.same(strict?.agents, ['vpro-cira']);
    t.match(strict?.remedy.join('\n'), /no directive changes that/);

    const verdicts = Object.fromEntries((report.agents?.verdicts ?? []).map((v) => [v.agent, v]));
    t.equal(verdicts.eset?.verdict, 'no-go');
    t.match(verdicts.eset?.reason, /^CONNECT refused to ports 2222, 8883/);
    t.equal(verdicts['vpro-cira']?.verdict, 'no-go');
    t.match(
      stdout,
      /^ {2}NO-GO +eset +CONNECT refused to ports 2222, 8883/m,
      'a verdict per agent at the top',
    );

    t.test('the printed Apache lines, added as a customer would, fix what they name', async (t) => {
      const fixed = await startApache(t, hosts, {
        modules: ['headers'],
        server: lines.filter((l) => l.startsWith('AllowCONNECT')),
        proxyBlock: lines.filter((l) => l.startsWith('RequestHeader')),
      });
      const after = await validate(t, net, fixed, 'eset');
      const causes = (after.report.findings ?? []).map((f) => f.cause);
      t.notOk(causes.includes('connect-port'), `no port refused any more: ${causes.join(', ')}`);
      t.notOk(causes.includes('proxy-auth-leak'), 'no credential reaches the origin any more');
    });
  },
);

/** How long a CONNECT tunnel through `proxyUrl` to 127.0.0.1:`port` stays up with no traffic (ms). */
function idleLifetime(proxyUrl: string, port: number, deadlineMs: number): Promise<number | 'open'> {
  return new Promise((resolve, reject) => {
    const u = new URL(proxyUrl);
    const s = net.connect(Number(u.port), u.hostname, () =>
      s.write(`CONNECT 127.0.0.1:${port} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n\r\n`),
    );
    let t0 = 0;
    const timer = setTimeout(() => {
      s.destroy();
      resolve('open');
    }, deadlineMs);
    s.on('data', (d) => {
      if (t0) return;
      if (!/^HTTP\/1\.[01] 200/.test(d.toString('latin1'))) reject(new Error(`CONNECT: ${d}`));
      t0 = performance.now();
    });
    s.on('close', () => {
      clearTimeout(timer);
      resolve(Math.round(performance.now() - t0));
    });
    s.on('error', reject);
  });
}

t.test(
  "Apache's tunnel idle timer is the longer of Timeout and ProxyTimeout: the printed ProxyTimeout line raises it whatever Timeout says",
  apacheSkip,
  async (t) => {
    const sink = net.createServer((c) => c.on('error', () => {}));
    await new Promise<void>((r) => sink.listen(0, '127.0.0.1', r));
    t.teardown(() => sink.close());
    const port = (sink.address() as net.AddressInfo).port;
    const remedy = productRemedy('apache-httpd')?.settings(
      { ...emptyRemediation('apache-httpd'), idleSeconds: 60 },
      { id: 'apache-httpd', name: 'Apache httpd', confidence: 'high', evidence: [] },
    );
    const lines = remedy?.flatMap((x) => x.lines) ?? [];
    t.equal(lines.length, 1);
    t.match(lines[0], /^ProxyTimeout \d+$/, `the remedy is a ProxyTimeout line: ${lines[0]}`);
    t.match(remedy?.[0]?.where, /the longer of Timeout and ProxyTimeout/);
    const short = await startApache(t, '/etc/hosts', { server: [`AllowCONNECT ${port}`, 'Timeout 2'] });
    const alone = await idleLifetime(short.url, port, 10_000);
    t.ok(typeof alone === 'number' && alone >= 1_500 && alone < 4_000, `Timeout 2: closed after ${alone} ms`);
    const raised = await startApache(t, '/etc/hosts', {
      server: [`AllowCONNECT ${port}`, 'Timeout 2', 'ProxyTimeout 5'],
    });
    const longer = await idleLifetime(raised.url, port, 10_000);
    t.ok(
      typeof longer === 'number' && longer >= 4_500 && longer < 8_000,
      `Timeout 2 with ProxyTimeout 5: closed after ${longer} ms`,
    );
  },
);

const squidSkip = requireComponent(t, 'squid', squidProblem());
const atsSkip = requireComponent(
  t,
  'trafficserver',
  debianProxyProblem('/usr/bin/traffic_server', 'trafficserver'),
);

t.test(
  'stock Debian trafficserver: Traffic Server 9, connect_ports in records.config',
  atsSkip,
  async (t) => {
    const net = await labNet(t);
    const hosts = labHostsFile(BIN, net);
    const ats = await startTrafficServer(t, hosts);
    const { code, stdout, report } = await validate(t, net, ats, 'eset,vpro-cira');
    t.equal(code, 1, 'red: connect_ports is "443" by default');
    const product = report.proxies[0]?.product;
    t.equal(product?.id, 'apache-trafficserver');
    t.match(product?.version, /^9\.\d+\.\d+$/);
    t.match(product?.evidence.join('\n'), /"Server: ATS\/9\.[\d.]+" in the CONNECT answer/);
    t.match(stdout, /^proxy external: .*Apache Traffic Server 9\.[\d.]+$/m);
    const lines = settingLines(report);
    t.same(
      lines,
      ['CONFIG proxy.config.http.connect_ports STRING 443 2222 4433 8883'],
      'the ATS setting, nothing else',
    );
    t.match(
      stdout,
      /^ {2}records\.config, then traffic_ctl config reload:\n {4}CONFIG proxy\.config\.http\.connect_ports STRING 443 2222 4433 8883$/m,
    );
    t.same(report.remediation?.[0]?.squidConf, []);
    t.notMatch(stdout, /squid\.conf|acl SSL_ports|In squid/, 'no squid.conf line printed');
    // Traffic Server consumes Proxy-Authorization (proxy_auth_to_parent 0): measured, no leak
    t.notOk(
      report.findings?.some((f) => f.cause === 'proxy-auth-leak'),
      'no leak finding: the origin did not receive the header',
    );
    t.equal(
      report.results.find((r) => r.endpoint === 'eset-repository.proxycheck.test:80' && r.check === 'headers')
        ?.outcome,
      'pass',
    );
    // its CONNECT answer carries header lines vPro's firmware rejects
    const strict = report.findings?.find((f) => f.cause === 'strict-connect');
    t.same(strict?.agents, ['vpro-cira']);
    t.match(strict?.title, /Server: ATS/);
    const verdicts = Object.fromEntries((report.agents?.verdicts ?? []).map((v) => [v.agent, v]));
    t.equal(verdicts.eset?.verdict, 'no-go');
    t.match(verdicts.eset?.reason, /^CONNECT refused to ports 2222, 8883$/);

    t.test('the printed records.config line, appended as a customer would, opens the ports', async (t) => {
      const fixed = await startTrafficServer(t, hosts, lines);
      const after = await validate(t, net, fixed, 'eset');
      const causes = (after.report.findings ?? []).map((f) => f.cause);
      t.notOk(causes.includes('connect-port'), `no port refused any more: ${causes.join(', ')}`);
    });
  },
);

t.test('stock Debian squid: squid, SSL_ports lines, and no leak', squidSkip, async (t) => {
  const net = await labNet(t);
  const squid = await startSquid(t, labHostsFile(BIN, net), stockSquidConf);
  const { code, stdout, report } = await validate(t, net, { url: squid.url }, 'eset');
  t.equal(code, 1);
  const product = report.proxies[0]?.product;
  t.equal(product?.id, 'squid');
  t.match(product?.version, /^\d+\.\d+/);
  t.match(product?.evidence.join('\n'), /X-Squid-Error|Server: squid/);
  t.same(report.remediation?.[0]?.squidConf, ['acl SSL_ports port 2222 8883']);
  t.match(stdout, /^ {2}squid\.conf \(acl lines next to .*\):\n {4}acl SSL_ports port 2222 8883$/m);
  t.notMatch(stdout, /AllowCONNECT|connect_ports/, "no other product's settings");
  t.notOk(
    report.findings?.some((f) => f.cause === 'proxy-auth-leak'),
    'squid consumes Proxy-Authorization',
  );
  const eset = report.agents?.verdicts.find((v) => v.agent === 'eset');
  t.equal(eset?.verdict, 'no-go');
  t.match(eset?.reason, /^CONNECT refused to ports 2222, 8883$/);
});

const tinyproxySkip = requireComponent(t, 'tinyproxy', debianProxyProblem('/usr/bin/tinyproxy', 'tinyproxy'));

t.test(
  'stock Debian tinyproxy: named from Proxy-agent and Via; it leaks, and answers CONNECT too loosely for vPro',
  tinyproxySkip,
  async (t) => {
    const net = await labNet(t);
    const tiny = await startTinyproxy(t, labHostsFile(BIN, net));
    const { code, stdout, report } = await validate(t, net, tiny, 'eset,vpro-cira');
    t.equal(code, 1);
    const product = report.proxies[0]?.product;
    t.equal(product?.id, 'tinyproxy');
    t.match(product?.version, /^\d+\.\d+\.\d+$/);
    t.match(product?.evidence.join('\n'), /"Proxy-agent: tinyproxy\/[\d.]+" in the CONNECT answer/);
    // the stock file has no ConnectPort line: every port is allowed, so no port finding
    t.notOk(
      report.findings?.some((f) => f.cause === 'connect-port'),
      'stock tinyproxy allows CONNECT to any port',
    );
    const leak = report.findings?.find((f) => f.cause === 'proxy-auth-leak');
    t.equal(leak?.severity, 'security', 'tinyproxy passes Proxy-Authorization on (measured)');
    t.match(leak?.remedy.join('\n'), /tinyproxy has no setting that removes a request header/);
    t.match(
      report.findings?.find((f) => f.cause === 'strict-connect')?.remedy.join('\n'),
      /no setting changes that/,
    );
    t.notMatch(stdout, /squid\.conf|acl SSL_ports|AllowCONNECT|connect_ports/);
    const verdicts = Object.fromEntries((report.agents?.verdicts ?? []).map((v) => [v.agent, v]));
    t.equal(verdicts.eset?.verdict, 'at-risk', 'eset works, but its credentials leak');
    t.match(verdicts.eset?.reason, /^Proxy-Authorization forwarded to the origin/);
    t.equal(verdicts['vpro-cira']?.verdict, 'no-go');
  },
);

const privoxySkip = requireComponent(t, 'privoxy', debianProxyProblem('/usr/sbin/privoxy', 'privoxy'));

t.test(
  'stock Debian privoxy: says nothing about itself and breaks nothing: go, product unknown',
  privoxySkip,
  async (t) => {
    const net = await labNet(t);
    const privoxy = await startPrivoxy(t, labHostsFile(BIN, net));
    const { code, stdout, report } = await validate(t, net, privoxy, 'eset,vpro-cira');
    t.equal(code, 0, 'every check passes through stock Privoxy');
    // nothing it answered names it: no guess
    t.same(report.proxies[0]?.product, {
      id: 'unknown',
      name: 'unknown product',
      confidence: 'low',
      evidence: [],
    });
    t.match(stdout, /^proxy external: .*; product unknown$/m);
    t.same(report.findings, []);
    t.same(
      report.agents?.verdicts.map((v) => [v.agent, v.verdict]),
      [
        ['eset', 'go'],
        ['vpro-cira', 'go'],
      ],
    );
    t.match(stdout, /^ {2}GO {6}eset {7}all \d+ checks that ran passed$/m);
  },
);

t.test(
  'a squid that offers Digest only: the remedy names both schemes, not a plea for credentials',
  { ...squidSkip },
  async (t) => {
    const net = await labNet(t);
    const squid = await startSquid(t, labHostsFile(BIN, net), (dir, port) => {
      writeFileSync(join(dir, 'digest-passwd'), 'corp:s3cr3t-pw\n', { mode: 0o644 });
      return baseConf(dir, port, [
        ...STOCK_POLICY,
        `auth_param digest program ${SQUID_HELPER_DIR}/digest_file_auth ${dir}/digest-passwd`,
        'auth_param digest children 2 startup=1 idle=1',
        'auth_param digest realm proxycheck-test',
        'acl authed proxy_auth REQUIRED',
        'http_access allow localhost authed',
        'http_access deny all',
      ]);
    });
    // the agent speaks Basic only, and sends the right user and password
    const { code, report } = await validate(t, net, { url: squid.url }, 'flexxagent');
    t.equal(code, 1);
    t.ok(
      report.results.some((r) => r.check === 'connect' && r.evidence.statusCode === 407),
      'squid answered 407 to Basic credentials',
    );
    const scheme = report.findings?.find((f) => f.cause === 'auth-scheme');
    t.match(scheme?.title, /the proxy asks for Digest; the agents speak Basic/);
    t.match(
      scheme?.remedy.join('\n'),
      /asks for Digest only and answered 407 to the agents' Basic credentials/,
    );
    t.notOk(
      report.findings?.some((f) => f.cause === 'credentials'),
      'not "give the agents credentials": they were sent',
    );
    t.match(
      scheme?.remedy.join('\n'),
      /auth_param block for \(basic, digest, negotiate, ntlm\)/,
      "squid's own note",
    );
    t.equal(report.agents?.verdicts.find((v) => v.agent === 'flexxagent')?.verdict, 'no-go');
  },
);
