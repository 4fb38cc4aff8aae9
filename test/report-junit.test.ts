/**
 * JUnit XML of a real run, read back by a mainstream parser (fast-xml-parser) for structure and
 * counts, and by a strict well-formedness checker (saxes) so an escaping slip cannot hide behind a
 * lenient parser. Also: the report flags' path checks on `run` and `validate`.
 */
import { mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { XMLParser, XMLValidator } from 'fast-xml-parser';
import { SaxesParser } from 'saxes';
import t from 'tap';
import { type CheckResult, type RunReport, summarize } from '../harness/model.ts';
import { ChainProxy } from '../harness/proxies/chain.ts';
import { withGoLive } from '../harness/report/golive.ts';
import { renderJunit } from '../harness/report/junit.ts';
import { runMatrix } from '../harness/runner/run.ts';
import { brokenProxy } from './helpers/adapters.ts';
import { cli } from './helpers/cli.ts';
import { labNet } from './helpers/lab-net.ts';

const OURS = ['setup_fail', 'harness_fail'];
const NOT_RUN = ['skip', 'dependency_fail', 'setup_fail', 'harness_fail'];

interface XmlCase {
  '@classname': string;
  '@name': string;
  '@time': string;
  failure?: { '#text': string; '@message': string; '@type': string };
  error?: { '#text': string; '@message': string; '@type': string };
  skipped?: { '@message': string };
  'system-out'?: string;
}
interface XmlSuite {
  '@name': string;
  '@tests': string;
  '@failures': string;
  '@errors': string;
  '@skipped': string;
  properties: { property: Array<{ '@name': string; '@value': string }> };
  testcase?: XmlCase[];
}

function parse(xml: string): {
  '@tests': string;
  '@failures': string;
  '@errors': string;
  '@skipped': string;
  testsuite: XmlSuite[];
} {
  return new XMLParser({
    ignoreAttributes: false,
    attributeNamePrefix: '@',
    trimValues: false,
    htmlEntities: true,
    parseTagValue: false,
    parseAttributeValue: false,
    isArray: (name) => ['testsuite', 'testcase', 'property'].includes(name),
  }).parse(xml).testsuites;
}

/** Throws on anything that is not well-formed XML 1.0 (characters, entities, `]]>`, `<` in attributes). */
function wellFormed(xml: string): void {
  const p = new SaxesParser({ xmlns: false });
  p.write(xml).close();
}

function expectedCounts(results: CheckResult[]) {
  return {
    tests: results.length,
    failures: results.filter((r) => !r.matched && !OURS.includes(r.outcome)).length,
    errors: results.filter((r) => !r.matched && OURS.includes(r.outcome)).length,
    skipped: results.filter((r) => r.matched && NOT_RUN.includes(r.outcome)).length,
  };
}

t.test('a real run: a testsuite per proxy, a testcase per result, counts that add up', async (t) => {
  const report = await runMatrix({
    proxies: [
      'chain-plain',
      'chain-mitm',
      // the same interception under an id with no expectations: every difference is unexpected
      new ChainProxy({ id: 'test-mitm-unexpected', mitm: true }),
      brokenProxy('test-broken'),
    ],
    profiles: ['flexxagent'],
    labNet: await labNet(t),
  });
  const xml = renderJunit(report);
  t.equal(XMLValidator.validate(xml), true, 'fast-xml-parser validates it');
  t.doesNotThrow(() => wellFormed(xml), 'strictly well-formed');
  const doc = parse(xml);

  const total = expectedCounts(report.results);
  t.ok(total.failures > 0 && total.errors > 0 && total.skipped > 0, `a varied run: ${JSON.stringify(total)}`);
  t.same(
    {
      tests: +doc['@tests'],
      failures: +doc['@failures'],
      errors: +doc['@errors'],
      skipped: +doc['@skipped'],
    },
    total,
    'testsuites totals',
  );
  t.same(
    doc.testsuite.map((s) => s['@name']),
    report.proxies.map((p) => p.id),
    'a testsuite per proxy, in order',
  );

  for (const suite of doc.testsuite) {
    const results = report.results.filter((r) => r.proxy === suite['@name']);
    const cases = suite.testcase ?? [];
    // what a JUnit consumer counts from the elements agrees with the attributes and the results
    const fromElements = {
      tests: cases.length,
      failures: cases.filter((c) => c.failure).length,
      errors: cases.filter((c) => c.error).length,
      skipped: cases.filter((c) => c.skipped).length,
    };
    const attrs = {
      tests: +suite['@tests'],
      failures: +suite['@failures'],
      errors: +suite['@errors'],
      skipped: +suite['@skipped'],
    };
    t.same(attrs, fromElements, `${suite['@name']}: attributes match the elements`);
    t.same(attrs, expectedCounts(results), `${suite['@name']}: counts match the results`);
    const proxy = report.proxies.find((p) => p.id === suite['@name']);
    const props = Object.fromEntries(suite.properties.property.map((p) => [p['@name'], p['@value']]));
    t.match(props, { kind: proxy?.kind, runtime: proxy?.runtime, version: proxy?.version });

    results.forEach((r, i) => {
      const c = cases[i];
      t.equal(c?.['@classname'], `${r.proxy}/${r.profile}`);
      t.equal(c?.['@name'], `${r.endpoint} ${r.check}`);
      t.equal(c?.['@time'], (r.durationMs / 1000).toFixed(3));
      const bad = c?.failure ?? c?.error;
      if (!r.matched) {
        t.equal(bad?.['@type'], r.outcome, `${r.id}: type is the outcome`);
        t.ok(bad?.['@message'].includes(r.message), `${r.id}: message attribute carries the message`);
        t.ok(bad?.['#text'].includes(`expected ${r.expected}`), `${r.id}: body names the expectation`);
        if (r.remediation) t.ok(bad?.['#text'].includes(r.remediation), `${r.id}: body has the remedy`);
        t.ok(bad?.['#text'].includes(JSON.stringify(r.evidence, null, 2)), `${r.id}: body has the evidence`);
      } else {
        t.notOk(bad, `${r.id}: matched, so no failure`);
      }
    });
  }

  // the three kinds of case, by example
  const byId = (id: string) => {
    const r = report.results.find((x) => x.id.startsWith(id));
    const suite = doc.testsuite.find((s) => s['@name'] === r?.proxy);
    return { r, c: suite?.testcase?.find((c) => c['@name'] === `${r?.endpoint} ${r?.check}`) };
  };
  const expectedFail = byId(
    'chain-mitm/flexxagent/west-eu.agent-api.analyzer.flexxible.com:443/tls-interception',
  );
  t.equal(expectedFail.r?.outcome, 'fail');
  t.equal(expectedFail.r?.matched, true);
  t.notOk(expectedFail.c?.failure ?? expectedFail.c?.skipped, 'an expected fail is a passing testcase');
  t.match(expectedFail.c?.['system-out'], `fail, as expected: ${expectedFail.r?.expectedReason}`);
  const dependent = byId('chain-mitm/flexxagent/west-eu.agent-api.analyzer.flexxible.com:443/payload');
  t.equal(dependent.r?.outcome, 'dependency_fail');
  t.match(dependent.c?.skipped?.['@message'], 'dependency_fail, as expected');
  const broken = byId('test-broken/');
  t.equal(broken.c?.error?.['@type'], 'setup_fail');
  t.match(broken.c?.error?.['#text'], 'Bungled squid.conf', 'setup evidence (the log) in the body');
  const unexpected = byId(
    'test-mitm-unexpected/flexxagent/west-eu.agent-api.analyzer.flexxible.com:443/pinning',
  );
  t.equal(unexpected.c?.failure?.['@type'], 'fail');
  t.match(unexpected.c?.failure?.['#text'], 'fail, expected pass');

  // with the go-live block: a testsuite per agent first, red only where the run is
  const live = parse(renderJunit(withGoLive(report)));
  t.equal(live.testsuite[0]?.['@name'], 'agent flexxagent', 'the agent verdicts come first');
  const verdicts = Object.fromEntries((live.testsuite[0]?.testcase ?? []).map((c) => [c['@name'], c]));
  t.same(Object.keys(verdicts), [
    'go via chain-plain',
    'no-go via chain-mitm',
    'no-go via test-mitm-unexpected',
    'at-risk via test-broken',
  ]);
  t.notOk(verdicts['go via chain-plain']?.failure, 'go passes');
  t.notOk(verdicts['no-go via chain-mitm']?.failure, 'an expected no-go passes');
  t.match(verdicts['no-go via chain-mitm']?.['system-out'], /^no-go: TLS inspected on [\s\S]*as expected/);
  t.equal(
    verdicts['no-go via test-mitm-unexpected']?.failure?.['@type'],
    'no-go',
    'an unexpected no-go fails',
  );
  t.equal(
    verdicts['at-risk via test-broken']?.failure?.['@type'],
    'at-risk',
    'checks that did not run: at risk',
  );
  t.same(
    { tests: +live['@tests'], failures: +live['@failures'], errors: +live['@errors'] },
    { tests: total.tests + 4, failures: total.failures + 2, errors: total.errors },
    'the totals count the agent testcases too',
  );
});

t.test('escaping: <, &, ]]>, quotes, newlines and control characters survive a round trip', async (t) => {
  const nasty = 'a < b && c > d ]]> "q" \'s\' <![CDATA[x]]> </testcase>';
  const result: CheckResult = {
    id: 'px/prof/h.test:443/odd-check',
    proxy: 'px',
    profile: 'prof',
    endpoint: 'h.test:443',
    check: 'odd-check',
    outcome: 'fail',
    expected: 'pass',
    matched: false,
    message: `${nasty}\nsecond line\tand\rcr \u0000nul \u0001soh \u001besc \u007fdel \ud800lone`,
    evidence: { head: `${nasty}\u0001`, bytes: [0, 1] },
    remediation: `fix ${nasty}`,
    durationMs: 12,
  };
  const skipped: CheckResult = {
    ...result,
    id: 'px/prof/h.test:443/other',
    check: 'other',
    outcome: 'skip',
    expected: 'skip',
    matched: true,
    message: `n/a ${nasty}`,
    remediation: '',
  };
  const report: RunReport = {
    schema: 'proxycheck/result@2',
    startedAt: '2025-01-01T00:00:00.000Z',
    finishedAt: '2025-01-01T00:00:02.500Z',
    tool: { name: 'proxycheck', version: '0.0.0-test' },
    proxies: [{ id: 'px', kind: 'k<&>', runtime: 'r"', version: "v'" }],
    results: [result, skipped],
    summary: summarize([result, skipped]),
  };
  const xml = renderJunit(report);
  t.doesNotThrow(() => wellFormed(xml), 'strictly well-formed');
  t.equal(XMLValidator.validate(xml), true);
  t.notMatch(xml, /<!\[CDATA\[/, 'no CDATA section of ours');
  const doc = parse(xml);
  const [c1, c2] = doc.testsuite[0]?.testcase ?? [];
  const shown = `${nasty}\nsecond line\tand\rcr \\u0000nul \\u0001soh \\u001besc \\u007fdel \\ud800lone`;
  t.equal(c1?.failure?.['@message'], `fail, expected pass: ${shown}`, 'attribute keeps newline, tab and CR');
  t.ok(c1?.failure?.['#text'].includes(shown), 'body keeps the text; controls become visible escapes');
  t.ok(c1?.failure?.['#text'].includes(`remediation: fix ${nasty}`));
  t.ok(c1?.failure?.['#text'].includes(JSON.stringify(result.evidence, null, 2)), 'evidence JSON intact');
  t.equal(c2?.skipped?.['@message'], `skip, as expected: n/a ${nasty}`);
  const props = Object.fromEntries(
    (doc.testsuite[0]?.properties.property ?? []).map((p) => [p['@name'], p['@value']]),
  );
  t.match(props, { kind: 'k<&>', runtime: 'r"', version: "v'" });
  t.equal(doc['@tests'], '2');
  t.equal(doc['@failures'], '1');
  t.equal(doc['@skipped'], '1');
});

t.test('report flags: an unwritable target is one line and exit 2, before anything starts', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'proxycheck-junit-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  mkdirSync(join(dir, 'a-directory'));
  const missing = join(dir, 'no-such-dir', 'report.xml');
  const net = String(await labNet(t));
  const cases: Array<{ args: string[]; stderr: RegExp }> = [
    {
      args: ['run', '--lab-net', net, '--junit', missing],
      stderr:
        /^proxycheck: --junit .*no-such-dir\/report\.xml: cannot write the report there \(its directory does not exist\)\n$/,
    },
    {
      args: ['run', '--lab-net', net, '--html', join(dir, 'a-directory')],
      stderr: /^proxycheck: --html .*a-directory: cannot write the report there \(is a directory\)\n$/,
    },
    {
      args: ['run', '--lab-net', net, '--json', join(dir, 'same'), '--tap', join(dir, 'same')],
      stderr: /^proxycheck: --json and --tap both write to .*same; give each its own file\n$/,
    },
    {
      args: ['run', '--lab-net', net, '--json', '-', '--junit', '-'],
      stderr: /^proxycheck: --json and --junit both write to stdout/,
    },
    {
      // the path is checked before the proxy URL is even tried (nothing listens on port 9)
      args: ['validate', '--proxy', 'http://127.0.0.1:9', '--lab-net', net, '--tap', missing],
      stderr: /^proxycheck: --tap .*no-such-dir\/report\.xml: cannot write the report there/,
    },
  ];
  for (const c of cases) {
    const r = await cli(c.args, { timeoutMs: 60_000 });
    t.equal(r.code, 2, `${c.args.join(' ')}: ${r.stderr}`);
    t.match(r.stderr, c.stderr, 'one line, naming the flag and the path');
    // a run that had started would print its table (and validate would first fail its preflight)
    t.equal(r.stdout, '', 'no table: nothing ran');
  }
  t.same(readdirSync(dir), ['a-directory'], 'the write probes left nothing behind');
});
