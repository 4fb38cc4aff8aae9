/**
 * `proxycheck validate --proxy URL`: a customer's go-live check of a proxy we did not start,
 * against the lab origins (which the proxy must resolve: `proxycheck lab hosts`).
 */
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { UsageError } from '../errors.ts';
import { parseLabNet } from '../lab/addresses.ts';
import { ExternalProxy, parseProxyUrl } from '../proxies/external.ts';
import { renderTable } from '../report/table.ts';
import { planReports, REPORT_FORMATS, writeReports } from '../report/write.ts';
import { runMatrix } from '../runner/run.ts';
import { loadScenarios } from '../scenarios.ts';

export const PASSWORD_ENV = 'PROXYCHECK_PROXY_PASSWORD';

export function registerValidateCommand(program: Command, out: { code: number }): void {
  program
    .command('validate')
    .description('check a proxy you run (not started by us) against the lab origins, before go-live')
    .requiredOption('--proxy <url>', 'the proxy, http://[user:password@]host:port')
    .option('--proxy-user <name>', 'proxy user name (instead of putting it in the URL)')
    .option('--proxy-password <password>', `proxy password (or set ${PASSWORD_ENV}; never printed)`)
    .option('--profiles <ids>', 'agent profiles to replay, or "all"', 'all')
    .option('--json <file>', REPORT_FORMATS.json.help)
    .option('--junit <file>', REPORT_FORMATS.junit.help)
    .option('--tap <file>', REPORT_FORMATS.tap.help)
    .option('--html <file>', REPORT_FORMATS.html.help)
    .option('--trust-ca <file>', "PEM of your TLS inspection CA, as deployed to the agents' trust store")
    .option('--tenant <id>', 'value for the "***" tenant part of catalog hosts', 'lab01')
    .option(
      '--lab-net <n>',
      'second octet of the lab addresses 127.N.x.y',
      process.env.PROXYCHECK_LAB_NET ?? '77',
    )
    .option('-v, --verbose', 'print remediation for every fail and warn')
    .action(async (o) => {
      const reports = planReports(o);
      const parsed = parseProxyUrl(o.proxy);
      const password: string | undefined = o.proxyPassword ?? process.env[PASSWORD_ENV];
      if (password !== undefined && !o.proxyUser && !parsed.credentials) {
        throw new UsageError('a proxy password was given without a user: add --proxy-user');
      }
      const credentials = o.proxyUser
        ? { username: o.proxyUser as string, password: password ?? '' }
        : parsed.credentials;
      let extraTrust: string[] = [];
      if (o.trustCa) {
        try {
          extraTrust = [readFileSync(o.trustCa, 'utf8')];
        } catch (err) {
          throw new UsageError(
            `--trust-ca ${o.trustCa}: ${(err as NodeJS.ErrnoException).code ?? 'unreadable'}`,
          );
        }
        if (!extraTrust[0]?.includes('BEGIN CERTIFICATE'))
          throw new UsageError(`--trust-ca ${o.trustCa}: not a PEM certificate`);
      }
      const report = await runMatrix({
        scenarios: loadScenarios({ tenant: o.tenant }),
        proxies: [new ExternalProxy({ url: o.proxy, ...(credentials ? { credentials } : {}) })],
        profiles: o.profiles
          .split(',')
          .map((s: string) => s.trim())
          .filter(Boolean),
        labNet: parseLabNet(o.labNet),
        extraTrust,
      });
      if (!reports.stdout) process.stdout.write(renderTable(report, { verbose: Boolean(o.verbose) }));
      writeReports(reports, report);
      out.code = report.summary.unmatched === 0 ? 0 : 1;
    });
}
