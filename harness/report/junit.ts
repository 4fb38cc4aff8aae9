/**
 * JUnit XML (the Ant/Jenkins/Surefire dialect every CI understands): first a <testsuite> per agent
 * (its go / no-go / at-risk verdict per proxy), then one <testsuite> per proxy, one <testcase> per
 * result, classname `<proxy>/<profile>`, name `<host:port> <check>`.
 *
 * Mapping (see disposition.ts): an unmatched result is a <failure type="<outcome>"> (an <error>
 * when the outcome is our own setup_fail/harness_fail) whose body holds the expectation, message,
 * remediation and evidence; a matched fail/warn is a passing testcase whose <system-out> says
 * "fail, as expected: <reason>"; a matched outcome that did not run the check (skip,
 * dependency_fail, …) is <skipped message="…">. So failures + errors > 0 exactly when proxycheck
 * exits 1. Text is escaped, never put in CDATA; characters XML 1.0 cannot carry at all (most C0
 * controls) are written as visible \uXXXX escapes.
 */
import type { CheckResult, RunReport } from '../model.ts';
import { disposition, evidenceJson, expectationLine, proxyOrder, visibleControls } from './disposition.ts';

function xmlText(s: string): string {
  return visibleControls(s).replace(/[&<>\r]/g, (c) =>
    c === '&' ? '&amp;' : c === '<' ? '&lt;' : c === '>' ? '&gt;' : '&#13;',
  );
}

function xmlAttr(s: string): string {
  return visibleControls(s).replace(/[&<>"'\r\n\t]/g, (c) => `&#${c.charCodeAt(0)};`);
}

function attrs(a: Record<string, string | number | undefined>): string {
  return Object.entries(a)
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => ` ${k}="${xmlAttr(String(v))}"`)
    .join('');
}

function seconds(ms: number): string {
  return (Math.max(0, ms) / 1000).toFixed(3);
}

interface Counts {
  tests: number;
  failures: number;
  errors: number;
  skipped: number;
}

function count(results: CheckResult[]): Counts {
  const c: Counts = { tests: results.length, failures: 0, errors: 0, skipped: 0 };
  for (const r of results) {
    const d = disposition(r);
    if (d === 'failure') c.failures += 1;
    else if (d === 'error') c.errors += 1;
    else if (d === 'skipped') c.skipped += 1;
  }
  return c;
}

function details(r: CheckResult): string {
  const lines = [expectationLine(r), r.message];
  if (r.remediation) lines.push(`remediation: ${r.remediation}`);
  lines.push(`id: ${r.id}`, `evidence: ${evidenceJson(r)}`);
  return lines.join('\n');
}

function testcase(r: CheckResult): string {
  const head = `    <testcase${attrs({
    classname: `${r.proxy}/${r.profile}`,
    name: `${r.endpoint} ${r.check}`,
    time: seconds(r.durationMs),
  })}>`;
  const body: string[] = [];
  switch (disposition(r)) {
    case 'failure':
    case 'error': {
      const tag = disposition(r) === 'error' ? 'error' : 'failure';
      body.push(
        `      <${tag}${attrs({ message: `${expectationLine(r)}: ${r.message}`, type: r.outcome })}>${xmlText(details(r))}</${tag}>`,
      );
      break;
    }
    case 'skipped':
      body.push(`      <skipped${attrs({ message: `${expectationLine(r)}: ${r.message}` })}/>`);
      body.push(`      <system-out>${xmlText(details(r))}</system-out>`);
      break;
    case 'expected':
      body.push(`      <system-out>${xmlText(details(r))}</system-out>`);
      break;
    case 'passed':
      body.push(`      <system-out>${xmlText(`${r.outcome}: ${r.message}`)}</system-out>`);
      break;
  }
  return [head, ...body, '    </testcase>'].join('\n');
}

/**
 * The agent verdicts as the first suites: one <testsuite name="agent <profile>"> per agent, a
 * testcase per proxy named by its verdict. A no-go or at-risk verdict is a <failure> when it rests
 * on results not as expected (so the XML stays red exactly when the run is); an expected one
 * (e.g. chain-mitm breaks a pinned agent by design) passes and says so in <system-out>.
 */
function agentSuites(report: RunReport): { xml: string[]; counts: Counts } {
  const verdicts = report.agents?.verdicts ?? [];
  const counts: Counts = { tests: 0, failures: 0, errors: 0, skipped: 0 };
  const xml: string[] = [];
  for (const agent of [...new Set(verdicts.map((v) => v.agent))]) {
    const mine = verdicts.filter((v) => v.agent === agent);
    const cases = mine.map((v) => {
      const unexpected = report.results.some((r) => r.proxy === v.proxy && r.profile === agent && !r.matched);
      const failed = v.verdict !== 'go' && unexpected;
      const text = `${v.verdict}: ${v.reason}${v.findings.length ? `\nfindings: ${v.findings.join(', ')}` : ''}`;
      return {
        failed,
        xml: [
          `    <testcase${attrs({ classname: `agents/${agent}`, name: `${v.verdict} via ${v.proxy}`, time: '0.000' })}>`,
          failed
            ? `      <failure${attrs({ message: `${v.verdict}: ${v.reason}`, type: v.verdict })}>${xmlText(text)}</failure>`
            : `      <system-out>${xmlText(v.verdict === 'go' ? text : `${text}\n(as expected for this proxy)`)}</system-out>`,
          '    </testcase>',
        ].join('\n'),
      };
    });
    const failures = cases.filter((c) => c.failed).length;
    counts.tests += cases.length;
    counts.failures += failures;
    xml.push(
      `  <testsuite${attrs({ name: `agent ${agent}`, tests: cases.length, failures, errors: 0, skipped: 0, time: '0.000', timestamp: report.startedAt })}>`,
      '    <properties>',
      `      <property${attrs({ name: 'title', value: mine[0]?.title ?? agent })}/>`,
      `      <property${attrs({ name: 'rule', value: report.agents?.rule ?? '' })}/>`,
      '    </properties>',
      ...cases.map((c) => c.xml),
      '  </testsuite>',
    );
  }
  return { xml, counts };
}

export function renderJunit(report: RunReport): string {
  const agents = agentSuites(report);
  const results = count(report.results);
  const total: Counts = {
    tests: results.tests + agents.counts.tests,
    failures: results.failures + agents.counts.failures,
    errors: results.errors,
    skipped: results.skipped,
  };
  const wall = Date.parse(report.finishedAt) - Date.parse(report.startedAt);
  const out = [
    '<?xml version="1.0" encoding="UTF-8"?>',
    `<testsuites${attrs({
      name: `${report.tool.name} ${report.tool.version}`,
      ...total,
      time: seconds(Number.isFinite(wall) ? wall : 0),
      timestamp: report.startedAt,
    })}>`,
  ];
  out.push(...agents.xml);
  for (const p of proxyOrder(report)) {
    const results = report.results.filter((r) => r.proxy === p.id);
    out.push(
      `  <testsuite${attrs({
        name: p.id,
        ...count(results),
        time: seconds(results.reduce((s, r) => s + r.durationMs, 0)),
        timestamp: report.startedAt,
      })}>`,
      '    <properties>',
      ...Object.entries({
        kind: p.kind,
        runtime: p.runtime,
        version: p.version,
        product:
          p.product && p.product.id !== 'unknown'
            ? `${p.product.name}${p.product.version ? ` ${p.product.version}` : ''} (${p.product.confidence} confidence)`
            : undefined,
        url: p.url,
        startMs: p.startMs,
        tool: `${report.tool.name} ${report.tool.version}`,
        schema: report.schema,
      })
        .filter(([, v]) => v !== undefined)
        .map(([name, value]) => `      <property${attrs({ name, value: String(value) })}/>`),
      '    </properties>',
      ...results.map(testcase),
      '  </testsuite>',
    );
  }
  out.push('</testsuites>');
  return out.join('\n') + '\n';
}
