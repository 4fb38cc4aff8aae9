/**
 * `proxycheck validate`: a customer's go-live check of a proxy we did not start, against the lab
 * origins (which the proxy must resolve: `proxycheck lab hosts`), or with `--origins live` against
 * the catalog endpoints on the real internet (harness/live/). The proxy is given (`--proxy URL`) or
 * found per vendor host as the agents' machines find it (`--proxy auto`: WPAD; `--pac URL|FILE`),
 * and every route found is validated (harness/cli/validate-routes.ts).
 */
import { readFileSync } from 'node:fs';
import { type Command, Option } from 'commander';
import { UsageError } from '../errors.ts';
import { parseLabNet } from '../lab/addresses.ts';
import { runLive } from '../live/live.ts';
import { parseParams } from '../live/params.ts';
import { publicRootStore, splitPem } from '../live/roots.ts';
import type { RunReport } from '../model.ts';
import { parseProxyUrl, readProxyCa } from '../proxies/external.ts';
import type { ProxyCredentials } from '../proxies/types.ts';
import { withGoLive } from '../report/golive.ts';
import { renderRemediation } from '../report/remediation.ts';
import { printRunOutput } from '../report/summary.ts';
import { renderTable } from '../report/table.ts';
import { planReports, REPORT_FORMATS, writeReports } from '../report/write.ts';
import { loadScenarios } from '../scenarios.ts';
import { printQuietSummary, quietOption } from './ci-options.ts';
import { parseSeconds, parseTimeScale, scenarioDir, timerWaitOption, timeScaleOption } from './options.ts';
import { proxyAuthCredentials } from './proxy-auth-option.ts';
import {
  checkDnsSuffix,
  type HowToFind,
  machineDnsSuffix,
  OS_RESOLVER_ENV,
  parsePacArg,
} from './validate-routes.ts';
import { redactedUrl, validateLab, validateLive } from './validate-runs.ts';

export const PASSWORD_ENV = 'PROXYCHECK_PROXY_PASSWORD';

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

export function registerValidateCommand(program: Command, out: { code: number }): void {
  program
    .command('validate')
    .description(
      'check a proxy you run (not started by us) before go-live: against the lab origins, or the real endpoints (--origins live). Give --proxy URL, or let it find the routes per vendor host as the agents do: --pac URL|FILE, --proxy auto (WPAD), or both (WPAD first)',
    )
    .option(
      '--proxy <url|auto>',
      'the proxy, http://[user:password@]host:port; or "auto": find it per vendor host with WPAD (http://wpad.<dns suffix>/wpad.dat), as the agent\'s machine does (lab and live)',
    )
    .option(
      '--pac <url|file>',
      "a proxy auto-config script (http(s) URL or file); each vendor host's route (lab: the profiles' exchanges; live: the catalog rows) is what its FindProxyForURL answers. With --proxy auto: used when wpad.<dns suffix> does not resolve",
    )
    .addOption(noProxyOption())
    .option(
      '--dns-suffix <name>',
      "--proxy auto: the machine's DNS suffix, for wpad.<suffix> (default: the search or domain line of /etc/resolv.conf)",
    )
    .option(
      '--resolve <host:address>',
      `answer this address for this name (the WPAD host, the PAC URL's host, proxies and vendor hosts a script looks up; the --proxy host), like curl's --resolve; repeatable. Other names: the OS resolver (off with ${OS_RESOLVER_ENV}=off)`,
      collect,
      [],
    )
    .option(
      '--proxy-user <name>',
      'proxy user name (instead of putting it in the URL; for every proxy found)',
    )
    .option('--proxy-password <password>', `proxy password (or set ${PASSWORD_ENV}; never printed)`)
    .option(
      '--proxy-auth <scheme>',
      'basic (default with a user), digest, ntlm (user DOMAIN\\name for a domain) or negotiate (Kerberos: your ticket cache, KRB5CCNAME honoured, or --proxy-keytab)',
    )
    .option('--proxy-keytab <file>', 'negotiate: get the ticket from this client keytab')
    .option(
      '--proxy-ca <file>',
      "an https:// proxy: the CA (PEM) its certificate must chain to (default: Node's public roots)",
    )
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
      const how = howToFind(o);
      const params = parseParams(o.param, o.tenant);
      const scenarios = loadScenarios({
        ...(o.tenant && !live ? { tenant: o.tenant } : {}),
        params,
        ...(o.scenarios ? { dir: scenarioDir(o.scenarios) } : {}),
      });
      const parsed = how.configured ? parseProxyUrl(how.configured) : undefined;
      const proxyCa = o.proxyCa ? readProxyCa(o.proxyCa, Boolean(parsed?.tls)) : undefined;
      const password: string | undefined = o.proxyPassword ?? process.env[PASSWORD_ENV];
      const schemed = proxyAuthCredentials(o, password, parsed?.credentials);
      if (password !== undefined && !o.proxyUser && !parsed?.credentials && !schemed) {
        throw new UsageError('a proxy password was given without a user: add --proxy-user');
      }
      const credentials: ProxyCredentials | undefined =
        schemed ??
        (o.proxyUser ? { username: o.proxyUser as string, password: password ?? '' } : parsed?.credentials);
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
      let routes: string[] = [];
      let report: RunReport;
      const liveTrust = () => extraTrust.flatMap((pem) => splitPem(pem, `--trust-ca ${o.trustCa}`));
      if (live && parsed && !how.noProxy.length && !how.resolve.length) {
        // --proxy URL alone: every row through it, as before routes could be found
        report = await runLive({
          proxy: {
            host: parsed.host,
            port: parsed.port,
            ...(credentials ? { credentials } : {}),
            ...(parsed.tls ? { tls: proxyCa ? { ca: proxyCa } : {} } : {}),
            url: redactedUrl(parsed),
          },
          scenarios,
          catalogs: ids(o.catalogs),
          params,
          publicRoots: publicRootStore(),
          extraTrust: liveTrust(),
        });
      } else if (live) {
        ({ report, routes } = await validateLive({
          how,
          scenarios,
          catalogs: ids(o.catalogs),
          params,
          ...(credentials ? { credentials } : {}),
          ...(proxyCa ? { proxyCa } : {}),
          extraTrust,
          liveTrust: liveTrust(),
        }));
      } else {
        ({ report, routes } = await validateLab({
          how,
          scenarios,
          profiles: ids(o.profiles),
          ...(credentials ? { credentials } : {}),
          ...(proxyCa ? { proxyCa } : {}),
          labNet: parseLabNet(o.labNet),
          extraTrust,
          ...(timerWait !== undefined ? { timerWait } : {}),
          timeScale: parseTimeScale(o.timeScale),
          quiet: Boolean(o.quiet),
        }));
      }
      withGoLive(report, { scenarios });
      // the routes found come first, where the summary goes (stderr when a report takes stdout)
      if (routes.length)
        (reports.stdout ? process.stderr : process.stdout).write(
          `${routes.join('\n')}\n${o.quiet ? '' : '\n'}`,
        );
      if (o.quiet) printQuietSummary(report, reports.stdout);
      else if (!reports.stdout) {
        printRunOutput(report, { details: o.details, verbose: o.verbose }, renderTable, renderRemediation);
      }
      writeReports(reports, report);
      out.code = report.summary.unmatched === 0 ? 0 : 1;
    });
}

/** `--no-proxy`, which commander would otherwise take for the negation of --proxy. */
function noProxyOption(): Option {
  const opt = new Option(
    '--no-proxy <patterns>',
    'hosts that go DIRECT before any proxy or script is asked (lab and live), as the Windows bypass list: patterns split on ; or , with * wildcards, <local> for plain host names (no dot); repeatable',
  );
  opt.negate = false;
  return opt.argParser(collect).default([]);
}

/** How the proxy is found, from --proxy, --pac and their companions; every mistake is one line. */
function howToFind(o: {
  proxy?: string;
  pac?: string;
  noProxy: string[];
  dnsSuffix?: string;
  resolve: string[];
}): HowToFind {
  const auto = o.proxy === 'auto';
  if (o.proxy === undefined && o.pac === undefined)
    throw new UsageError('which proxy? give --proxy URL, --proxy auto (WPAD) or --pac URL|FILE');
  if (o.pac !== undefined && o.proxy !== undefined && !auto)
    throw new UsageError(
      '--pac goes alone, or with --proxy auto (WPAD first, then the script): not with --proxy URL',
    );
  if (o.dnsSuffix !== undefined && !auto)
    throw new UsageError('--dns-suffix is for --proxy auto (the name WPAD looks up is wpad.<suffix>)');
  let wpadSuffix: string | undefined;
  if (auto) {
    const suffix = o.dnsSuffix ?? machineDnsSuffix();
    if (suffix === undefined)
      throw new UsageError(
        '--proxy auto: this machine has no DNS suffix (no search or domain line in /etc/resolv.conf): give --dns-suffix NAME',
      );
    wpadSuffix = checkDnsSuffix(suffix);
  }
  return {
    ...(o.proxy !== undefined && !auto ? { configured: o.proxy } : {}),
    ...(wpadSuffix ? { wpadSuffix } : {}),
    ...(o.pac !== undefined ? { pac: parsePacArg(o.pac) } : {}),
    noProxy: o.noProxy,
    resolve: o.resolve,
  };
}
