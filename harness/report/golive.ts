/**
 * What every report opens with: the product behind each proxy (fingerprint.ts, into
 * `proxies[].product`), the remediation per proxy (remediation.ts), the findings by root cause and
 * a verdict per agent (findings.ts).
 */
import type { RunReport } from '../model.ts';
import type { ScenarioSet } from '../scenarios.ts';
import { withFindings } from './findings.ts';
import { fingerprint } from './fingerprint.ts';
import { withRemediation } from './remediation.ts';

export function withGoLive(report: RunReport, opts: { scenarios?: ScenarioSet } = {}): RunReport {
  for (const p of report.proxies)
    p.product ??= fingerprint(
      p,
      report.results.filter((r) => r.proxy === p.id),
    );
  // the checks' remedies name squid's directive as an example: only for squid
  for (const r of report.results) {
    const product = report.proxies.find((p) => p.id === r.proxy)?.product?.id;
    if (product !== 'squid' && r.remediation) r.remediation = withoutSquidExamples(r.remediation);
  }
  withRemediation(report, opts);
  return withFindings(report, opts);
}

/** A check's remedy without its squid examples: "(squid: …)" asides and a closing "In squid: …". */
export function withoutSquidExamples(text: string): string {
  return text
    .replace(/ ?\((?:squid|in squid): [^()]*(?:\([^()]*\)[^()]*)*\)/gi, '')
    .replace(/ In squid: .*$/s, '')
    .trim();
}
