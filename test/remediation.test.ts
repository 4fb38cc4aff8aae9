/**
 * The remediation generator on results of real runs: squid-default really refuses 13000 with 403,
 * squid-bump really re-signs the pinned host, squid-auth really answers 407 to a wrong password,
 * chain-mitm (proxy-chain, not squid) really intercepts. The squid.conf lines it gives are put
 * where its advice says and checked by the real `squid -k parse`.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { LAB_ID_HEADER, Lab } from '../harness/lab/lab.ts';
import { createLabPki } from '../harness/lab/pki.ts';
import { RunDir } from '../harness/lab/rundir.ts';
import type { ProxyRemediation, RunReport } from '../harness/model.ts';
import { chainMitm } from '../harness/proxies/chain.ts';
import { type SquidFlavour, squidConfig } from '../harness/proxies/squid/config.ts';
import { SQUID_HELPER_DIR } from '../harness/proxies/squid/process.ts';
import { SquidProxy } from '../harness/proxies/squid/squid.ts';
import {
  buildRemediation,
  detectProduct,
  insertSquidLines,
  renderRemediation,
  withRemediation,
} from '../harness/report/remediation.ts';
import { diagnoseReach } from '../harness/route/reach.ts';
import { proxyRoute } from '../harness/route/route.ts';
import { runMatrix } from '../harness/runner/run.ts';
import { loadScenarios } from '../harness/scenarios.ts';
import { withCredentials } from './helpers/adapters.ts';
import { fixtureScenarios } from './helpers/fixtures.ts';
import { labNet } from './helpers/lab-net.ts';
import { requireComponent, squidProblem } from './helpers/requirements.ts';

// many CLI runs and real proxies: on a loaded 2-core machine this takes minutes
t.setTimeout(300_000);

const opts = requireComponent(t, 'squid', squidProblem());

function tmp(): string {
  const dir = mkdtempSync(join(tmpdir(), 'proxycheck-test-remedy-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A generated squid.conf of `flavour` with `lines` inserted, checked by `squid -k parse`. */
async function parses(
  flavour: SquidFlavour,
  lines: string[],
): Promise<{ status: number | null; out: string }> {
  const dir = tmp();
  const { corporate, labRoot } = await createLabPki(dir);
  writeFileSync(join(dir, 'hosts'), '127.168.1.1\tpinned.proxycheck.test\n');
  const conf = insertSquidLines(
    squidConfig({
      flavour,
      port: 3128,
      spliceHosts: ['unrelated.proxycheck.test'],
      paths: {
        pidFile: join(dir, 'squid.pid'),
        cacheLog: join(dir, 'cache.log'),
        accessLog: `stdio:${join(dir, 'access.log')}`,
        coredumpDir: dir,
        hostsFile: join(dir, 'hosts'),
        helperDir: SQUID_HELPER_DIR,
        signingCert: corporate.cert.certFile,
        signingKey: corporate.cert.keyFile,
        originCa: labRoot.cert.certFile,
        sslDb: join(dir, 'ssl_db'),
      },
    }),
    lines,
  );
  const file = join(dir, 'squid.conf');
  writeFileSync(file, conf);
  const r = spawnSync('/usr/sbin/squid', ['-k', 'parse', '-f', file], { encoding: 'utf8', timeout: 30_000 });
  return { status: r.status, out: `${r.stdout}${r.stderr}\n--- squid.conf ---\n${conf}` };
}

const scenarios = fixtureScenarios();
let report: RunReport | undefined;
let rem: Map<string, ProxyRemediation> = new Map();

t.test('real runs', { ...opts, timeout: 180_000 }, async (t) => {
  report = await runMatrix({
    proxies: [
      new SquidProxy({ flavour: 'default', runtime: 'process' }),
      new SquidProxy({ flavour: 'bump', runtime: 'process' }),
      withCredentials(new SquidProxy({ flavour: 'auth', runtime: 'process' }), 'squid-auth-wrong', {
        username: 'agent',
        password: 'wrong-one',
      }),
      chainMitm(),
    ],
    profiles: ['odd-port', 'unpinned', 'pinned'],
    scenarios,
    labNet: await labNet(t),
  });
  rem = new Map(buildRemediation(report, { scenarios }).map((r) => [r.proxy, r]));
  t.same([...rem.keys()].sort(), ['chain-mitm', 'squid-auth-wrong', 'squid-bump', 'squid-default']);
  const refused = report.results.find(
    (r) =>
      r.proxy === 'squid-default' && r.endpoint === 'odd-port.proxycheck.test:13000' && r.check === 'connect',
  );
  t.equal(refused?.outcome, 'fail', 'squid-default really refuses 13000');
});

t.test('squid-default: the SSL_ports line for the refused port, and it parses', opts, async (t) => {
  const r = rem.get('squid-default');
  t.equal(r?.product, 'squid');
  t.match(r?.productEvidence, /"squid \d[^"]*" in the version the proxy reports/);
  t.same(r?.connectPorts, [{ port: 13000, endpoints: ['odd-port.proxycheck.test:13000'] }]);
  t.same(r?.squidConf, ['acl SSL_ports port 13000']);
  t.same(r?.noInspect, []);
  t.match(
    r?.text[0],
    /^Allow CONNECT to port 13000: the proxy refused it with 403 for odd-port\.proxycheck\.test:13000/,
  );
  const p = await parses('default', r?.squidConf ?? []);
  t.equal(p.status, 0, 'squid -k parse exits 0');
  if (p.status !== 0) t.comment(p.out);
  t.match(p.out, /Processing: acl SSL_ports port 13000/);
});

t.test(
  'squid-bump: splice the pinned host it bumped (not the one that may be inspected)',
  opts,
  async (t) => {
    const r = rem.get('squid-bump');
    t.equal(r?.product, 'squid');
    t.same(r?.noInspect, [
      { host: 'pinned.proxycheck.test', pinned: true, reSignedBy: 'proxycheck Corporate Inspection CA' },
    ]);
    // squid answers 200 to a denied CONNECT on an ssl-bump port and delivers the 403 inside the
    // bumped session; connect looks behind the 200, so 13000 is the refused port it is
    t.same(r?.connectPorts, [{ port: 13000, endpoints: ['odd-port.proxycheck.test:13000'] }]);
    t.equal(r?.bumpedPorts, undefined, 'no guessing from interception on a port known to be refused');
    t.match(r?.text.join('\n'), /Allow CONNECT to port 13000: the proxy refused it with 403/);
    t.same(r?.squidConf, [
      'acl SSL_ports port 13000',
      'acl proxycheck_nobump ssl::server_name pinned.proxycheck.test',
      'ssl_bump splice proxycheck_nobump',
    ]);
    t.notOk(
      r?.squidConf.some((l) => l.includes('open.proxycheck.test')),
      'open.proxycheck.test was inspected (warn) but may be: not listed',
    );
    // without the catalog the evidence still says so: an interception verdict carries the row's
    // pinned and must-not-inspect flags
    const bare = buildRemediation(report as RunReport).find((x) => x.proxy === 'squid-bump');
    t.same(
      bare?.noInspect.map((n) => [n.host, n.pinned]),
      [['pinned.proxycheck.test', true]],
    );
    t.match(bare?.text.join('\n'), 'pinned.proxycheck.test (pinned)');
    t.same(bare?.squidConf, r?.squidConf, 'the same squid lines either way');
    const p = await parses('bump', r?.squidConf ?? []);
    t.equal(p.status, 0, 'squid -k parse exits 0');
    if (p.status !== 0) t.comment(p.out);
    t.same(
      p.out.split('\n').filter((l) => /FATAL|ERROR|WARNING|Bungled/.test(l)),
      [],
      'no errors or warnings',
    );
    const order = [...p.out.matchAll(/Processing: (ssl_bump \S+ \S+|acl proxycheck_nobump)/g)].map(
      (m) => m[1],
    );
    t.same(order.slice(0, 3), [
      'acl proxycheck_nobump',
      'ssl_bump splice proxycheck_nobump',
      'ssl_bump peek step1',
    ]);
  },
);

t.test('squid-auth with a wrong password: give credentials, no http_access line', opts, async (t) => {
  const r = rem.get('squid-auth-wrong');
  t.equal(r?.product, 'squid');
  // squid checks "deny CONNECT !SSL_ports" before authentication: 13000 gets 403, 443 gets 407
  t.same(r?.credentials, ['open.proxycheck.test:443', 'pinned.proxycheck.test:443']);
  t.same(r?.connectPorts, [{ port: 13000, endpoints: ['odd-port.proxycheck.test:13000'] }]);
  t.same(r?.squidConf, ['acl SSL_ports port 13000'], 'no http_access line: opening squid is not the fix');
  t.match(
    r?.text.join('\n'),
    /Give the agents proxy credentials: the proxy answered 407 for open\.proxycheck\.test:443/,
  );
});

t.test('chain-mitm is not squid: text only', opts, async (t) => {
  const r = rem.get('chain-mitm');
  t.equal(r?.product, 'proxy-chain');
  t.match(r?.productEvidence, /proxy-chain/);
  t.same(r?.squidConf, []);
  t.same(
    r?.noInspect.map((n) => n.host),
    ['pinned.proxycheck.test'],
  );
  t.match(r?.text.join('\n'), /Exclude from TLS inspection .*pinned\.proxycheck\.test \(pinned\)/);
  const printed = renderRemediation(buildRemediation(report as RunReport, { scenarios }));
  t.match(
    printed,
    /^\nRemediation\nproxy squid-default \(squid \d[\d.]* \(high confidence\), from "Server: squid\/[\d.]+" in the CONNECT answer for /,
  );
  t.match(
    printed,
    /proxy chain-mitm \(proxy-chain \(Node\.js\) [\d.]+ \(high confidence\), from "proxy-chain /,
  );
  t.notMatch(printed.split('proxy chain-mitm')[1] ?? '', /squid\.conf/);
});

t.test(
  'an unknown product gets product-neutral text only; squid is recognised from its answers',
  async (t) => {
    const refused = {
      id: 'external/p/odd.test:13000/connect',
      proxy: 'external',
      profile: 'p',
      endpoint: 'odd.test:13000',
      check: 'connect',
      outcome: 'fail' as const,
      expected: 'pass' as const,
      matched: false,
      message: 'CONNECT odd.test:13000 answered "HTTP/1.1 403 Forbidden", not 200',
      evidence: {
        request: 'CONNECT odd.test:13000 HTTP/1.1\r\n\r\n',
        statusCode: 403,
        answerHead:
          'HTTP/1.1 403 Forbidden\r\nServer: squid/5.7\r\nX-Squid-Error: ERR_ACCESS_DENIED 0\r\n\r\n',
      },
      remediation: '',
      durationMs: 1,
    };
    const proxy = { id: 'external', kind: 'external', runtime: 'external', version: 'unknown' };
    t.same(detectProduct(proxy, [refused]), {
      product: 'squid',
      evidence:
        '"Server: squid/5.7" in the CONNECT answer for odd.test:13000; "X-Squid-Error: ERR_ACCESS_DENIED 0" in the CONNECT answer for odd.test:13000',
    });
    const anon = {
      ...refused,
      evidence: { ...refused.evidence, answerHead: 'HTTP/1.1 403 Forbidden\r\n\r\n' },
    };
    t.same(detectProduct(proxy, [anon]), { product: 'unknown' });
    const base = {
      schema: 'proxycheck/result@2' as const,
      startedAt: '',
      finishedAt: '',
      tool: { name: 'proxycheck' as const, version: '0' },
      proxies: [proxy],
      summary: {} as RunReport['summary'],
    };
    const unknown = buildRemediation({ ...base, results: [anon] })[0];
    t.equal(unknown?.product, 'unknown');
    t.same(unknown?.squidConf, [], 'no squid.conf lines for a product we cannot name');
    t.ok(unknown?.text.length);
    const printed = renderRemediation([unknown as ProxyRemediation]);
    t.match(printed, /proxy external \(product unknown: product-neutral steps\)/);
    t.notMatch(printed, /squid/i);
    // a forwarded plain-HTTP request refused with 403: an allow rule, not a CONNECT port
    const forwarded = {
      ...anon,
      id: 'external/p/repo.test:80/forward',
      endpoint: 'repo.test:80',
      check: 'forward',
      evidence: { request: 'HEAD http://repo.test/ HTTP/1.1\r\n\r\n', statusCode: 403 },
    };
    const http = buildRemediation({ ...base, results: [forwarded] })[0];
    t.same(http?.httpRefused, ['repo.test:80']);
    t.same(http?.connectPorts, []);
    t.match(http?.text.join('\n'), 'Allow plain HTTP (forwarded requests) to repo.test:80');
    // nothing failed: no remediation field at all
    const clean = withRemediation({ ...base, results: [{ ...anon, outcome: 'pass' }] });
    t.equal(clean.remediation, undefined);
    t.equal(renderRemediation(clean.remediation), '');
  },
);

t.test(
  'tunnel-keepalive remedies follow the measured timer: idle (tunnelled or inspected) or a lifetime cap',
  opts,
  async (t) => {
    // results in the shape tunnel-keepalive reports (evidence.timers); the real squid that produces
    // them is in test/squid-selective-bump.test.ts
    const result = (timers: Record<string, unknown>) => ({
      id: 'external/vpro-cira/iagent.flexxible.com:443/tunnel-keepalive',
      proxy: 'external',
      profile: 'vpro-cira',
      endpoint: 'iagent.flexxible.com:443',
      check: 'tunnel-keepalive',
      outcome: 'fail' as const,
      expected: 'pass' as const,
      matched: false,
      message: 'idle timer: the proxy closed a silent tunnel after 8 s without traffic',
      evidence: { timers: { agentGapSeconds: 30, sessionSeconds: 300, waitedSeconds: 10, ...timers } },
      remediation: '',
      durationMs: 10_000,
    });
    const proxy = { id: 'external', kind: 'external', runtime: 'external', version: 'squid/5.7' };
    const remedy = (timers: Record<string, unknown>) =>
      buildRemediation({
        schema: 'proxycheck/result@2',
        startedAt: '',
        finishedAt: '',
        tool: { name: 'proxycheck', version: '0' },
        proxies: [proxy],
        results: [result(timers)],
        summary: {} as RunReport['summary'],
      })[0];

    const idle = remedy({ timer: 'idle', state: 'tunnelled', idleTimerSeconds: 8 });
    t.equal(idle?.idleSeconds, 30);
    t.same(idle?.squidConf, ['read_timeout 900 seconds'], "at least squid's default, above the 30 s gap");
    t.match(idle?.text.join('\n'), 'stay open while silent for more than 30 s');
    t.match(idle?.text.join('\n'), 'This opens no port and no host');
    let p = await parses('default', idle?.squidConf ?? []);
    t.equal(p.status, 0, 'squid -k parse exits 0');
    t.match(p.out, /Processing: read_timeout 900 seconds/);

    // a bumped connection is timed by request_timeout / client_idle_pconn_timeout, not read_timeout
    const bumped = remedy({ timer: 'idle', state: 'inspected', idleTimerSeconds: 8 });
    t.same(bumped?.squidConf, ['request_timeout 300 seconds', 'client_idle_pconn_timeout 120 seconds']);
    p = await parses('bump', bumped?.squidConf ?? []);
    t.equal(p.status, 0, 'squid -k parse exits 0');

    // a lifetime cap: squid has none on tunnels, so no squid.conf line pretends to fix it
    const life = remedy({ timer: 'lifetime', state: 'tunnelled', lifetimeCapSeconds: 5 });
    t.equal(life?.lifetimeSeconds, 300);
    t.same(life?.squidConf, []);
    t.match(life?.text.join('\n'), /live at least 300 s.*lifetime cap[\s\S]*client_lifetime does not apply/);
  },
);

t.test('an intercepting proxy: untrusted re-signing and broken non-TLS tunnels are named', async (t) => {
  const scenarios = loadScenarios({
    dir: fileURLToPath(new URL('../fixtures/scenarios-streams/', import.meta.url)),
  });
  const report = await runMatrix({
    proxies: ['chain-mitm'],
    profiles: ['streams'],
    scenarios,
    labNet: await labNet(t),
  });
  const [rem] = buildRemediation(report, { scenarios });
  t.ok(rem, 'chain-mitm has something to fix');
  // 13000 speaks its own protocol inside TLS: re-signed (the catalog allows it: warn) and refused;
  // a proxy that parses HTTP inside breaks it even with the CA deployed, so: do not inspect it
  t.same(rem?.untrustedInspection, []);
  t.same(rem?.noInspect, [
    {
      host: 'agent.proxycheck.test',
      pinned: false,
      reSignedBy: 'proxycheck Corporate Inspection CA',
      notHttp: true,
    },
  ]);
  t.same(rem?.bumpedPorts, [13000]);
  // 2222 and raw 443 do not speak TLS: the inspecting proxy closed their tunnels
  t.same(rem?.nonTls?.sort(), ['agent.proxycheck.test:2222', 'agent.proxycheck.test:443']);
  t.match(
    rem?.text.join('\n'),
    /Let CONNECT tunnels to agent\.proxycheck\.test:2222, agent\.proxycheck\.test:443 carry traffic that is not TLS/,
  );
  t.match(rem?.text.join('\n'), /agent\.proxycheck\.test \(not HTTP inside TLS/);
  t.same(rem?.squidConf, [], 'proxy-chain is not squid: no squid.conf lines');
  // a proxy we cannot identify gets product-neutral text and no squid lines
  const anonymous = {
    ...report,
    proxies: report.proxies.map((p) => ({ ...p, kind: 'unknown', version: 'unknown' })),
  };
  const [unknown] = buildRemediation(anonymous, { scenarios });
  t.equal(unknown?.product, 'unknown');
  t.same(unknown?.squidConf, [], 'unknown product: no squid.conf lines');
  t.equal(unknown?.settings, undefined, 'and no product settings');
  // the same findings from squid get its lines
  const [squid] = buildRemediation(
    { ...report, proxies: report.proxies.map((p) => ({ ...p, kind: 'unknown', version: 'squid 5.7' })) },
    { scenarios },
  );
  t.equal(squid?.product, 'squid');
  t.same(
    squid?.squidConf.filter((l) => /nontls/.test(l)),
    ['acl proxycheck_nontls dstdomain agent.proxycheck.test', 'ssl_bump splice proxycheck_nontls'],
    'squid lines for non-TLS tunnels, limited to those hosts (spliced at step 1, never on_unsupported_protocol)',
  );
});

t.test(
  'squid-bump: the printed lines let the agent protocols through and open nothing they do not name',
  { ...opts, timeout: 240_000 },
  async (t) => {
    const scenarios = loadScenarios({
      dir: fileURLToPath(new URL('../fixtures/scenarios-streams/', import.meta.url)),
    });
    const net = await labNet(t);
    const result = (r: RunReport, port: number, check: string) =>
      r.results.find((x) => x.endpoint === `agent.proxycheck.test:${port}` && x.check === check);
    const before = await runMatrix({
      proxies: [new SquidProxy({ flavour: 'bump', runtime: 'process' })],
      profiles: ['streams'],
      scenarios,
      labNet: net,
    });
    // squid answers 200 to the CONNECTs its policy denies; connect looks behind it
    for (const port of [13000, 2222]) {
      const c = result(before, port, 'connect');
      t.equal(c?.outcome, 'fail', `${port} refused: ${c?.message}`);
      t.match(
        c?.message,
        /refused inside the inspected session: "HTTP\/1\.1 403 Forbidden" \(X-Squid-Error: ERR_ACCESS_DENIED 0\)/,
      );
      t.equal(result(before, port, 'payload')?.outcome, 'dependency_fail');
    }
    t.equal(result(before, 443, 'connect')?.outcome, 'pass', '443 is allowed');
    t.equal(result(before, 443, 'payload')?.outcome, 'fail', 'raw TCP on 443 broken by the bump');
    const [rem] = buildRemediation(before, { scenarios });
    t.equal(rem?.product, 'squid');
    const lines = rem?.squidConf ?? [];
    t.same(
      lines,
      [
        'acl SSL_ports port 2222 13000',
        'acl proxycheck_nobump ssl::server_name agent.proxycheck.test',
        'ssl_bump splice proxycheck_nobump',
        'acl proxycheck_nontls dstdomain agent.proxycheck.test',
        'ssl_bump splice proxycheck_nontls',
      ],
      'SSL_ports for the refused ports, a splice for the TLS protocol and one for the non-TLS ones',
    );
    t.notOk(
      lines.some((l) => /on_unsupported_protocol/.test(l)),
      'no line that tunnels bytes through a CONNECT the policy denies',
    );
    let conf = '';
    const fixed = new SquidProxy({
      flavour: 'bump',
      runtime: 'process',
      amendConfig: (c) => {
        conf = insertSquidLines(c, lines);
        return conf;
      },
    });
    const after = await runMatrix({ proxies: [fixed], profiles: ['streams'], scenarios, labNet: net });
    t.match(conf, /^ssl_bump splice proxycheck_nontls$/m, 'the lines are in the config squid ran');
    t.ok(
      conf.indexOf('ssl_bump splice proxycheck_nontls') < conf.indexOf('ssl_bump peek'),
      'the splice comes before squid peeks for a ClientHello',
    );
    for (const port of [13000, 2222, 443]) {
      const p = result(after, port, 'payload');
      t.equal(p?.outcome, 'pass', `${port} works after the fix: ${p?.message}`);
    }
    const tls = result(after, 13000, 'tls-interception');
    t.equal(tls?.outcome, 'pass', "13000 is spliced: the origin's own certificate");
    t.same(buildRemediation(after, { scenarios }), [], 'nothing left to fix');

    // and the fixed squid still refuses what the lines do not name: another port, another host
    const lab = await Lab.start({
      pki: await createLabPki(t.testdir()),
      hosts: [{ host: 'agent.proxycheck.test', ports: [{ port: 14000, transport: 'tcp', service: 'echo' }] }],
      net,
    });
    t.teardown(() => lab.stop());
    const runDir = new RunDir('proxycheck-test-');
    t.teardown(() => runDir.remove());
    const started = await fixed.start({ lab, runDir });
    t.teardown(() => started.stop());
    const route = proxyRoute({ host: started.host, port: started.port });
    for (const port of [14000, 9999]) {
      const reach = await diagnoseReach(route, { host: 'agent.proxycheck.test', port }, false, {
        labId: lab.id,
        labHeader: LAB_ID_HEADER,
        timeoutMs: 5_000,
      });
      t.equal(
        reach.reached,
        false,
        `CONNECT to ${port}, not named by the fix, is still refused: ${reach.how}`,
      );
      t.equal(reach.insideStatusCode, 403);
    }
  },
);

t.test('endpoint variants (host:port#name) are read as their host and port', async (t) => {
  const scenarios = loadScenarios();
  const report = await runMatrix({
    proxies: ['chain-mitm'],
    profiles: ['vpro-cira'],
    scenarios,
    labNet: await labNet(t),
  });
  t.ok(
    report.results.some((r) => r.endpoint === 'iagent.flexxible.com:4433#open-amt-mps'),
    'the 4433 exchange is a named variant',
  );
  const [rem] = buildRemediation(report, { scenarios });
  t.same(rem?.bumpedPorts, [4433], 'an integer port, not NaN');
  t.same(
    rem?.noInspect.map((n) => n.host),
    ['iagent.flexxible.com'],
    'one host, found through its catalog row',
  );
});
