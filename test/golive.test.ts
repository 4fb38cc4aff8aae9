/**
 * The go-live pieces on their own, from hand-made results: every product signature recognised
 * from an answer that product gives (and not confused with another), every finding type with a
 * remedy for every product (unknown included: product-neutral, no squid.conf), every check that
 * can fail feeding a finding, and the agent verdict rule (go / no-go / at risk) in each branch.
 */
import t from 'tap';
import { parseAllDocuments } from 'yaml';
import { CHECK_ORDER } from '../harness/checks/index.ts';
import {
  type CheckResult,
  PRODUCT_IDS,
  type ProductId,
  type ProxyInfo,
  type ProxyRemediation,
  type RunReport,
} from '../harness/model.ts';
import { CAUSE_FACTS, causeRemedy, portRanges, withFindings } from '../harness/report/findings.ts';
import { fingerprint, SIGNATURES } from '../harness/report/fingerprint.ts';
import { withGoLive, withoutSquidExamples } from '../harness/report/golive.ts';
import { productRemedy } from '../harness/report/products/index.ts';
import { emptyRemediation } from './helpers/remediation.ts';

const proxy: ProxyInfo = { id: 'external', kind: 'external', runtime: 'external', version: 'unknown' };

function result(over: Partial<CheckResult> & { evidence: Record<string, unknown> }): CheckResult {
  const endpoint = over.endpoint ?? 'odd.test:13000';
  const check = over.check ?? 'connect';
  const profile = over.profile ?? 'kaspersky';
  return {
    id: `external/${profile}/${endpoint}/${check}`,
    proxy: 'external',
    profile,
    endpoint,
    check,
    outcome: 'fail',
    expected: 'pass',
    matched: false,
    message: `${check} failed`,
    remediation: `fix ${check}`,
    durationMs: 1,
    ...over,
  };
}

const refused = (head: string, body = '') =>
  result({
    evidence: {
      request: 'CONNECT odd.test:13000 HTTP/1.1\r\n\r\n',
      statusCode: 403,
      answerHead: head,
      answerBody: body,
    },
  });

t.test('fingerprints: each product from what it says, with version, confidence and evidence', async (t) => {
  const cases: Array<[ProductId, CheckResult[], ProxyInfo?, string?]> = [
    [
      'squid',
      [refused('HTTP/1.1 403 Forbidden\r\nServer: squid/5.7\r\nX-Squid-Error: ERR_ACCESS_DENIED 0\r\n\r\n')],
      undefined,
      '5.7',
    ],
    [
      'apache-httpd',
      [
        refused(
          'HTTP/1.1 403 Proxy Error\r\nServer: Apache/2.4.71 (Debian)\r\n\r\n',
          '<address>Apache/2.4.71 (Debian) Server at odd.test Port 13000</address>',
        ),
      ],
      undefined,
      '2.4.71',
    ],
    [
      'apache-httpd',
      [
        result({
          check: 'connect-response',
          evidence: {
            answerHead: 'HTTP/1.0 200 Connection Established\r\nProxy-agent: Apache/2.4.62 (Debian)\r\n\r\n',
          },
        }),
      ],
      undefined,
      '2.4.62',
    ],
    [
      'apache-trafficserver',
      [refused('HTTP/1.1 403 Tunnel Forbidden\r\nServer: ATS/9.2.9\r\n\r\n')],
      undefined,
      '9.2.9',
    ],
    [
      'tinyproxy',
      [refused('HTTP/1.0 403 Access violation\r\nServer: tinyproxy/1.11.1\r\n\r\n')],
      undefined,
      '1.11.1',
    ],
    [
      'privoxy',
      [
        refused(
          'HTTP/1.1 403 Request blocked by Privoxy\r\n\r\n',
          '<title>403 Request blocked by Privoxy</title> This is Privoxy 3.0.34',
        ),
      ],
      undefined,
      '3.0.34',
    ],
    ['mitmproxy', [result({ check: 'tls-interception', evidence: { reSignedByCN: 'mitmproxy' } })]],
    [
      'zscaler',
      [
        result({
          check: 'tls-interception',
          evidence: { reSignedByCN: 'Zscaler Intermediate Root CA (zscaler.net)' },
        }),
      ],
    ],
    [
      'netskope',
      [result({ check: 'tls-interception', evidence: { reSignedByCN: 'ca.acme.goskope.com Netskope' } })],
    ],
    ['proxysg', [refused('HTTP/1.1 403 Forbidden\r\nX-BlueCoat-Via: 4a1b2c\r\n\r\n')]],
    [
      'forcepoint',
      [
        result({
          check: 'tls-interception',
          evidence: { reSignedByCN: 'Forcepoint Cloud Security Gateway CA' },
        }),
      ],
    ],
    [
      'paloalto',
      [refused('HTTP/1.1 503 Service Unavailable\r\n\r\n', 'Web Page Blocked ... Palo Alto Networks')],
    ],
    [
      'fortinet',
      [
        refused(
          'HTTP/1.1 403 Forbidden\r\n\r\n',
          '<title>FortiGuard Intrusion Prevention - Access Blocked</title>',
        ),
      ],
    ],
    ['proxy-chain', [], { ...proxy, kind: 'chain', version: 'proxy-chain 3.0.1' }, '3.0.1'],
    ['unknown', [refused('HTTP/1.1 403 Forbidden\r\n\r\n')]],
  ];
  const seen = new Set<ProductId>();
  for (const [id, results, p, version] of cases) {
    const fp = fingerprint(p ?? proxy, results);
    seen.add(id);
    t.equal(fp.id, id, `recognised as ${id}: ${fp.evidence.join('; ')}`);
    if (version) t.equal(fp.version, version, `${id} version`);
    if (id !== 'unknown') t.ok(fp.evidence.length, `${id}: the evidence used is named`);
    else t.same(fp.evidence, [], 'nothing matched: no evidence, no guess');
  }
  t.same(
    [...seen].sort(),
    [...new Set([...SIGNATURES.map((s) => s.product), 'unknown' as const])].sort(),
    'every signature in the table is exercised here',
  );
  // Traffic Server's Via names "ApacheTrafficServer": not Apache httpd
  const via = result({
    check: 'headers',
    evidence: {
      steps: [{ received: 'GET / HTTP/1.1\r\nVia: http/1.1 ats[uuid] (ApacheTrafficServer/9.2.9)\r\n\r\n' }],
    },
  });
  t.equal(fingerprint(proxy, [via]).id, 'apache-trafficserver');
  // a header self-identification outranks an error-page mention
  const mixed = refused('HTTP/1.1 403 Forbidden\r\nServer: squid/6.10\r\n\r\n', 'blocked by Zscaler policy');
  t.equal(fingerprint(proxy, [mixed]).id, 'squid');
  t.equal(fingerprint(proxy, [mixed]).confidence, 'high');
});

/** A remediation with every fact of `cause` set. */
function remFor(cause: string, product: ProductId): ProxyRemediation {
  const r = emptyRemediation(product);
  const set: Record<string, () => void> = {
    'connect-port': () => {
      r.connectPorts = [{ port: 13000, endpoints: ['odd.test:13000'] }];
    },
    'connect-host': () => {
      r.refusedEndpoints = ['blocked.test:443'];
    },
    'http-refused': () => {
      r.httpRefused = ['repo.test:80'];
    },
    inspection: () => {
      r.noInspect = [{ host: 'pinned.test', pinned: true, reSignedBy: 'Corp CA' }];
      r.untrustedInspection = [{ host: 'other.test', reSignedBy: 'Corp CA' }];
    },
    'non-tls': () => {
      r.nonTls = ['stream.test:2222'];
    },
    credentials: () => {
      r.credentials = ['odd.test:443'];
    },
    'auth-scheme': () => {
      r.authSchemes = [{ endpoint: 'odd.test:443', offered: ['Digest'], sent: 'Basic' }];
    },
    'proxy-auth-leak': () => {
      r.leakedProxyAuthorization = ['repo.test:80'];
    },
    'strict-connect': () => {
      r.strictConnect = [{ endpoint: 'cira.test:443', problems: ['answered HTTP/1.0, not HTTP/1.1'] }];
    },
    'tunnel-timers': () => {
      r.idleSeconds = 100;
      r.lifetimeSeconds = 200;
      r.idleInspectedSeconds = 50;
    },
  };
  set[cause]?.();
  return r;
}

t.test('every finding type has a remedy for every product; squid.conf for squid only', async (t) => {
  t.same(
    Object.keys(CAUSE_FACTS).sort(),
    [
      'auth-scheme',
      'connect-host',
      'connect-port',
      'credentials',
      'http-refused',
      'inspection',
      'non-tls',
      'proxy-auth-leak',
      'strict-connect',
      'tunnel-timers',
    ],
    'the finding types enumerated here are all there are',
  );
  for (const cause of Object.keys(CAUSE_FACTS)) {
    for (const id of PRODUCT_IDS) {
      const fp = {
        id,
        name: id,
        confidence: 'high' as const,
        evidence: [],
        ...(id === 'apache-trafficserver' ? { version: '9.2.9' } : {}),
      };
      const { remedy, settings } = causeRemedy(remFor(cause, id), cause, fp);
      t.ok(remedy.length > 0, `${cause} on ${id}: a remedy`);
      const all = [...remedy, ...(settings ?? []).flatMap((s) => [s.where, ...s.lines])].join('\n');
      if (id !== 'squid')
        t.notMatch(all, /squid\.conf|acl SSL_ports|http_access|ssl_bump/, `${cause} on ${id}: no squid.conf`);
    }
  }
  const setting = (cause: string, id: ProductId, version?: string) =>
    causeRemedy(remFor(cause, id), cause, {
      id,
      name: id,
      confidence: 'high',
      evidence: [],
      ...(version ? { version } : {}),
    }).settings?.flatMap((s) => s.lines) ?? [];
  t.same(setting('connect-port', 'squid'), ['acl SSL_ports port 13000']);
  t.same(setting('connect-port', 'apache-httpd'), ['AllowCONNECT 443 563 13000']);
  t.same(setting('connect-port', 'apache-trafficserver', '9.2.9'), [
    'CONFIG proxy.config.http.connect_ports STRING 443 13000',
  ]);
  t.same(setting('connect-port', 'apache-trafficserver', '10.0.2'), [
    '---',
    'records:',
    '  http:',
    '    connect_ports: "443 13000"',
  ]);
  const both = remFor('tunnel-timers', 'apache-trafficserver');
  both.connectPorts = [{ port: 2222, endpoints: ['x.test:2222'] }];
  both.leakedProxyAuthorization = ['repo.test:80'];
  t.same(
    productRemedy('apache-trafficserver')
      ?.settings(both, {
        id: 'apache-trafficserver',
        name: 'ATS',
        version: '10.1.0',
        confidence: 'high',
        evidence: [],
      })
      .flatMap((s) => s.lines),
    [
      '---',
      'records:',
      '  http:',
      '    connect_ports: "443 2222"',
      '    transaction_no_activity_timeout_in: 160',
      '    transaction_no_activity_timeout_out: 160',
      '    transaction_active_timeout_in: 900',
      '    forward:',
      '      proxy_auth_to_parent: 0',
    ],
    'ATS 10: one records.yaml document, dotted names as nested keys',
  );
  // appended to the end of a stock records.yaml, the document parses as the later one of two and
  // carries the new values under the records root (ATS: "subsequent documents overrides earlier fields")
  const stock = 'records:\n  http:\n    connect_ports: "443"\n    transaction_no_activity_timeout_in: 30\n';
  const docs = parseAllDocuments(
    `${stock}${setting('connect-port', 'apache-trafficserver', '10.0.2').join('\n')}\n`,
  );
  t.equal(docs.length, 2, 'two YAML documents');
  t.same(
    docs.map((d) => (d.errors.length ? d.errors.map(String) : d.toJS())),
    [
      { records: { http: { connect_ports: '443', transaction_no_activity_timeout_in: 30 } } },
      { records: { http: { connect_ports: '443 13000' } } },
    ],
  );
  t.same(setting('connect-port', 'tinyproxy'), ['ConnectPort 13000']);
  t.same(setting('connect-port', 'privoxy'), ['{+limit-connect{443,13000}}', '/']);
  t.same(setting('inspection', 'mitmproxy'), [
    'ignore_hosts:',
    "  - '^other\\.test:'",
    "  - '^pinned\\.test:'",
  ]);
  t.same(setting('inspection', 'zscaler'), ['other.test', 'pinned.test'], 'the exact list to enter');
  t.same(setting('connect-port', 'fortinet'), ['13000']);
  t.same(setting('proxy-auth-leak', 'apache-httpd'), ['RequestHeader unset Proxy-Authorization']);
  t.same(setting('tunnel-timers', 'apache-trafficserver', '9.2.9'), [
    'CONFIG proxy.config.http.transaction_no_activity_timeout_in INT 160',
    'CONFIG proxy.config.http.transaction_no_activity_timeout_out INT 160',
    'CONFIG proxy.config.http.transaction_active_timeout_in INT 900',
  ]);
  t.same(setting('connect-port', 'unknown'), [], 'unknown product: no settings at all');
  const scheme = causeRemedy(remFor('auth-scheme', 'unknown'), 'auth-scheme', {
    id: 'unknown',
    name: 'unknown',
    confidence: 'low',
    evidence: [],
  });
  t.match(scheme.remedy.join('\n'), /asks for Digest only and answered 407 to the agents' Basic credentials/);
  t.notMatch(
    scheme.remedy.join('\n'),
    /Give the agents proxy credentials/,
    'credentials were sent: not the fix',
  );
  t.ok(productRemedy('squid') && productRemedy('zscaler') && !productRemedy('unknown'));
});

const base = (results: CheckResult[]): RunReport => ({
  schema: 'proxycheck/result@2',
  startedAt: '',
  finishedAt: '',
  tool: { name: 'proxycheck', version: '0' },
  proxies: [proxy],
  results,
  summary: {} as RunReport['summary'],
});

t.test('every check that can fail feeds a finding; verdicts follow the documented rule', async (t) => {
  // one failing result of every check, for one agent each: each lands in some finding
  const results = CHECK_ORDER.map((check) =>
    result({ check, profile: `agent-${check}`, endpoint: `h-${check}.test:443`, evidence: {} }),
  );
  const report = withGoLive(base(results));
  for (const r of results) {
    const f = report.findings?.find((x) => x.evidence.includes(r.id));
    t.ok(f, `${r.check}: in a finding`);
    t.ok(f?.remedy.length, `${r.check}: the finding has a remedy`);
    t.equal(
      report.agents?.verdicts.find((v) => v.agent === r.profile)?.verdict,
      'no-go',
      `${r.check}: a fail is no-go`,
    );
  }
  const leak = result({
    check: 'headers',
    profile: 'eset',
    endpoint: 'repo.test:80',
    evidence: { leakedProxyAuthorization: true },
  });
  const pass = (profile: string) =>
    result({
      outcome: 'pass',
      matched: true,
      expected: 'pass',
      profile,
      check: 'forward',
      endpoint: 'repo.test:80',
      evidence: {},
    });
  const warn = result({
    outcome: 'warn',
    profile: 'warned',
    check: 'headers',
    endpoint: 'repo.test:80',
    evidence: {},
  });
  const broken = result({ outcome: 'harness_fail', profile: 'unknown-agent', evidence: {} });
  const skipped = result({
    outcome: 'skip',
    expected: 'skip',
    matched: true,
    profile: 'skipped',
    evidence: {},
  });
  const r2 = withGoLive(base([leak, pass('eset'), pass('fine'), warn, pass('warned'), broken, skipped]));
  const v = Object.fromEntries((r2.agents?.verdicts ?? []).map((x) => [x.agent, x]));
  t.equal(v.eset?.verdict, 'at-risk', 'a leak alone: at risk');
  t.match(v.eset?.reason, /Proxy-Authorization forwarded/);
  t.equal(r2.findings?.find((f) => f.cause === 'proxy-auth-leak')?.severity, 'security');
  t.equal(v.fine?.verdict, 'go');
  t.equal(v.warned?.verdict, 'at-risk', 'a warn: at risk');
  t.equal(r2.findings?.find((f) => f.agents.includes('warned'))?.severity, 'degraded');
  t.equal(v['unknown-agent']?.verdict, 'at-risk', 'our own failure is never a go');
  t.match(v['unknown-agent']?.reason, /did not run/);
  t.equal(v.skipped?.verdict, 'at-risk', 'nothing observed is never a go');
  t.equal(r2.agents?.schema, 'proxycheck/agents@1');
  // a fail-open agent whose proxy is unreachable: working through auto detect is at risk; a
  // fallback that failed too is no-go
  const down = (profile: string, fallback: 'pass' | 'fail') => [
    result({
      check: 'connect',
      profile,
      endpoint: 'ras.test:443',
      message: 'proxy unreachable',
      evidence: {},
    }),
    result({
      check: 'fallback',
      profile,
      endpoint: 'ras.test:443',
      outcome: fallback,
      matched: true,
      expected: fallback,
      evidence: {},
    }),
  ];
  const r3 = withGoLive(base([...down('fell-back', 'pass'), ...down('stranded', 'fail')]));
  const v3 = Object.fromEntries((r3.agents?.verdicts ?? []).map((x) => [x.agent, x]));
  t.equal(v3['fell-back']?.verdict, 'at-risk', 'unreachable proxy, fallback worked: at risk');
  t.match(v3['fell-back']?.reason, /falls back through auto detect and works .*ras\.test:443/);
  t.equal(v3.stranded?.verdict, 'no-go', 'unreachable proxy, fallback failed: no-go');
  // findings only from the report's own remediation: rebuilding gives the same
  t.same(withFindings(structuredClone(r2)).findings, r2.findings);
});

t.test("the checks' squid examples stay out of other products' cells", async (t) => {
  t.equal(
    withoutSquidExamples(
      'Allow CONNECT to h:8883 (the documented failover port) or to the primary port (squid: acl SSL_ports port 8883).',
    ),
    'Allow CONNECT to h:8883 (the documented failover port) or to the primary port.',
  );
  t.equal(
    withoutSquidExamples(
      'Exclude h from TLS inspection (SSL bump / deep inspection): the vendor requires it. In squid: list it in an ssl::server_name ACL used by "ssl_bump splice".',
    ),
    'Exclude h from TLS inspection (SSL bump / deep inspection): the vendor requires it.',
  );
  const cell = (version: string) =>
    withGoLive({
      ...base([
        result({
          check: 'failover',
          remediation: 'Allow CONNECT to h:443 (squid: acl SSL_ports port 443).',
          evidence: {},
        }),
      ]),
      proxies: [{ id: 'external', kind: 'external', runtime: 'external', version }],
    }).results[0]?.remediation;
  t.equal(cell('proxy-chain 3.0.1'), 'Allow CONNECT to h:443.', 'not squid: no squid example');
  t.equal(cell('squid 5.7'), 'Allow CONNECT to h:443 (squid: acl SSL_ports port 443).', 'squid keeps it');
});

t.test('refused ports read as ranges, as an admin types them', async (t) => {
  t.equal(
    portRanges([2222, 8883, 13000, 13291, 13292, 13293, 14000, 17000]),
    '2222, 8883, 13000, 13291-13293, 14000, 17000',
  );
  t.equal(portRanges([443, 444]), '443, 444', 'two in a row are not a range');
  t.equal(portRanges([]), '');
});
