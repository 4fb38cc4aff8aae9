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
  withRemediation(report, opts);
  return withFindings(report, opts);
}
