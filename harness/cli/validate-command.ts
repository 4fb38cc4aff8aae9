/**
 * `proxycheck validate --proxy URL`: a customer's go-live check of a proxy we did not start,
 * against the lab origins (which the proxy must resolve: `proxycheck lab hosts`), or with
 * `--origins live` against the catalog endpoints on the real internet (harness/live/).
 */
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { UsageError } from '../errors.ts';
import { parseLabNet } from '../lab/addresses.ts';
import { runLive } from '../live/live.ts';
import { parseParams } from '../live/params.ts';
import { publicRootStore, splitPem } from '../live/roots.ts';
import { ExternalProxy, parseProxyUrl } from '../proxies/external.ts';
import { renderRemediation, withRemediation } from '../report/remediation.ts';
import { printRunOutput } from '../report/summary.ts';
import { renderTable } from '../report/table.ts';
import { planReports, REPORT_FORMATS, writeReports } from '../report/write.ts';
import { runMatrix } from '../runner/run.ts';
import { loadScenarios } from '../scenarios.ts';
import { printQuietSummary, quietOption, withProgress } from './ci-options.ts';
import { parseSeconds, parseTimeScale, scenarioDir, timerWaitOption, timeScaleOption } from './options.ts';

export const PASSWORD_ENV = 'PROXYCHECK_PROXY_PASSWORD';

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

export function registerValidateCommand(program: Command, out: { code: number }): void {
  program
    .command('validate')
    .description(
      'check a proxy you run (not started by us) before go-live: against the lab origins, or the real endpoints (--origins live)',
    )
    .requiredOption('--proxy <url>', 'the proxy, http://[user:password@]host:port')
    .option('--proxy-user <name>', 'proxy user name (instead of putting it in the URL)')
    .option('--proxy-password <password>', `proxy password (or set ${PASSWORD_ENV}; never printed)`)
    .option(
      '--origins <lab|live>',
      'lab: our lab origins (default); live: the catalog endpoints on the internet',
      'lab',
    )
    .option('--profiles <ids>', 'lab: agent profiles to replay, or "all"', 'all')
    .option('--catalogs <ids>', 'live: catalogs whose agent endpoints to check, or "all"', 'all')
    .option('--json <file>', REPORT_FORMATS.json.help)
    .option('--junit <file>', REPORT_FORMATS.junit.help)
    .option('--tap <file>', REPORT_FORMATS.tap.help)
    .option('--html <file>', REPORT_FORMATS.html.help)
    .option('--trust-ca <file>', "PEM of your TLS inspection CA, as deployed to the agents' trust store")
    .option(
      '--tenant <id>',
      'value for {tenant} in catalog hosts (lab default: lab01; live: rows needing it are skipped without it)',
    )
    .option(
      '--param <name=value>',
      'live: value for another {name} in catalog hosts (repeatable)',
      collect,
      [],
    )
    .addOption(timerWaitOption())
    .option('--idle-seconds <n>', 'lab: the same as --timer-wait (kept for existing scripts)')
    .option(
      '--scenarios <dir>',
      'scenario directory (catalogs/, profiles/, and proxies/ definitions added to the built-in ones)',
    )
    .option(
      '--lab-net <n>',
      'second octet of the lab addresses 127.N.x.y',
      process.env.PROXYCHECK_LAB_NET ?? '77',
    )
    .option(
      '-v, --verbose',
      'print the remediation in full (also printed whenever a result is not as expected)',
    )
    .option('--details', 'print every result in a table instead of the profile x proxy summary')
    .addOption(timeScaleOption())
    .addOption(quietOption())
    .action(async (o, cmd: Command) => {
      const reports = planReports(o);
      const live = o.origins === 'live';
      if (!live && o.origins !== 'lab')
        throw new UsageError(`--origins must be lab or live, not "${o.origins}"`);
      const given = (name: string) => cmd.getOptionValueSource(name) === 'cli';
      if (live && given('profiles'))
        throw new UsageError('--profiles replays lab exchanges; with --origins live choose --catalogs');
      if (!live && given('catalogs'))
        throw new UsageError('--catalogs is for --origins live; lab mode uses --profiles');
      const timerWait =
        parseSeconds(o.timerWait, '--timer-wait') ?? parseSeconds(o.idleSeconds, '--idle-seconds');
      const timerFlag = o.timerWait !== undefined ? '--timer-wait' : '--idle-seconds';
      if (live && timerWait !== undefined)
        throw new UsageError(
          `${timerFlag} needs the lab origins (a real endpoint may close an idle tunnel itself): use it without --origins live`,
        );
      if (!live && o.param.length)
        throw new UsageError(
          '--param is for --origins live; lab mode uses the lab values of host parameters, as "proxycheck lab hosts" prints them',
        );
      const params = parseParams(o.param, o.tenant);
      const scenarios = loadScenarios({
        ...(o.tenant && !live ? { tenant: o.tenant } : {}),
        params,
        ...(o.scenarios ? { dir: scenarioDir(o.scenarios) } : {}),
      });
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
      const ids = (v: string) =>
        v
          .split(',')
          .map((s: string) => s.trim())
          .filter(Boolean);
      const report = live
        ? await runLive({
            proxy: {
              host: parsed.host,
              port: parsed.port,
              ...(credentials ? { credentials } : {}),
              url: redactedUrl(parsed),
            },
            scenarios,
            catalogs: ids(o.catalogs),
            params,
            publicRoots: publicRootStore(),
            extraTrust: extraTrust.flatMap((pem) => splitPem(pem, `--trust-ca ${o.trustCa}`)),
          })
        : await withProgress(
            Boolean(o.quiet),
            { proxies: 1, scenarios, profiles: ids(o.profiles) },
            (hooks) =>
              runMatrix({
                scenarios,
                proxies: [new ExternalProxy({ url: o.proxy, ...(credentials ? { credentials } : {}) })],
                profiles: ids(o.profiles),
                labNet: parseLabNet(o.labNet),
                extraTrust,
                ...(timerWait !== undefined ? { timerWait } : {}),
                timeScale: parseTimeScale(o.timeScale),
                ...hooks,
              }),
          );
      withRemediation(report, { scenarios });
      if (o.quiet) printQuietSummary(report, reports.stdout);
      else if (!reports.stdout) {
        printRunOutput(report, { details: o.details, verbose: o.verbose }, renderTable, renderRemediation);
      }
      writeReports(reports, report);
      out.code = report.summary.unmatched === 0 ? 0 : 1;
    });
}

function redactedUrl(p: { host: string; port: number }): string {
  return `http://${p.host.includes(':') ? `[${p.host}]` : p.host}:${p.port}`;
}
