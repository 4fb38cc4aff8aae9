import { Command, CommanderError } from 'commander';
import { CHECKS } from '../checks/index.ts';
import { errorMessage, SetupError, UsageError } from '../errors.ts';
import { labAddress, parseLabNet } from '../lab/addresses.ts';
import { Lab } from '../lab/lab.ts';
import { createLabPki } from '../lab/pki.ts';
import { RunDir } from '../lab/rundir.ts';
import { cleanupAll, installSignalHandlers, onCleanup } from '../lifecycle.ts';
import { DEFAULT_PROXIES, proxyCatalog } from '../proxies/registry.ts';
import { withGoLive } from '../report/golive.ts';
import { renderRemediation } from '../report/remediation.ts';
import { printRunOutput } from '../report/summary.ts';
import { renderTable } from '../report/table.ts';
import { planReports, REPORT_FORMATS, writeReports } from '../report/write.ts';
import { DEFAULT_JOBS, labHostsFor, runMatrix, selectProfiles, VERSION } from '../runner/run.ts';
import { loadScenarios, resolveHost } from '../scenarios.ts';
import { baselineOption, quietOption, shardOption, startCiRun, updateBaselineOption } from './ci-options.ts';
import { registerLoadCommand } from './load-command.ts';
import {
  labNetOption,
  list,
  parseJobs,
  parseRuntime,
  parseSeconds,
  parseTimeScale,
  scenarioDir,
  timerWaitOption,
  timeScaleOption,
} from './options.ts';
import { registerServeCommand } from './serve-command.ts';
import { registerSquidCommands } from './squid-commands.ts';
import { registerValidateCommand } from './validate-command.ts';

function buildProgram(out: { code: number }): Command {
  const program = new Command('proxycheck')
    .description('Forward-proxy conformance harness for endpoint-management agents')
    .version(VERSION)
    .showHelpAfterError(false)
    .configureOutput({ writeErr: () => {} })
    .exitOverride();

  program
    .command('run')
    .description('start the lab and the proxies, replay agent profiles through each, print verdicts')
    .option(
      '--proxies <ids>',
      'proxies to test: definition ids (proxycheck list shows them) or definition files (.yaml)',
      DEFAULT_PROXIES.join(','),
    )
    .option('--profiles <ids>', 'agent profiles to replay, or "all"', 'all')
    .option('--json <file>', REPORT_FORMATS.json.help)
    .option('--junit <file>', REPORT_FORMATS.junit.help)
    .option('--tap <file>', REPORT_FORMATS.tap.help)
    .option('--html <file>', REPORT_FORMATS.html.help)
    .option(
      '--trust-corporate-ca',
      'agents trust the corporate inspection CA (as an enterprise that deployed it)',
    )
    .option('--tenant <id>', 'value for the "***" tenant part of catalog hosts', 'lab01')
    .option(
      '-v, --verbose',
      'print the remediation in full (also printed whenever a result is not as expected)',
    )
    .option('--details', 'print every result in a table instead of the profile x proxy summary')
    .option('--runtime <auto|container|process>', 'where squid proxies run', 'auto')
    .option(
      '--scenarios <dir>',
      'scenario directory (catalogs/, profiles/, and proxies/ definitions added to the built-in ones)',
    )
    .option(
      '--jobs <n>',
      '(proxy, profile) work items in flight at once across the proxies (1: one after another)',
      String(DEFAULT_JOBS),
    )
    .addOption(labNetOption())
    .addOption(timeScaleOption())
    .addOption(timerWaitOption())
    .addOption(baselineOption())
    .addOption(updateBaselineOption())
    .addOption(shardOption())
    .addOption(quietOption())
    .action(async (o) => {
      const reports = planReports(o);
      const scenarios = loadScenarios({
        tenant: o.tenant,
        ...(o.scenarios ? { dir: scenarioDir(o.scenarios) } : {}),
      });
      const [proxies, profiles] = [list(o.proxies), list(o.profiles)];
      const ci = startCiRun(o, { proxies, profiles, scenarios, version: VERSION });
      let report: Awaited<ReturnType<typeof runMatrix>>;
      try {
        report = await runMatrix({
          scenarios,
          proxies,
          profiles,
          runtime: parseRuntime(o.runtime),
          labNet: parseLabNet(o.labNet),
          tenant: o.tenant,
          trustCorporateCa: Boolean(o.trustCorporateCa),
          timeScale: parseTimeScale(o.timeScale),
          jobs: parseJobs(String(o.jobs)),
          ...(o.timerWait !== undefined ? { timerWait: parseSeconds(o.timerWait, '--timer-wait') } : {}),
          ...ci.runOptions,
        });
      } finally {
        ci.progress.stop();
      }
      withGoLive(report, { scenarios });
      if (!reports.stdout && !o.quiet) {
        printRunOutput(report, { details: o.details, verbose: o.verbose }, renderTable, renderRemediation);
      }
      writeReports(reports, report);
      out.code = ci.finish(report, { stdoutTaken: reports.stdout });
    });
  registerSquidCommands(program);
  registerValidateCommand(program, out);
  registerServeCommand(program);
  registerLoadCommand(program, out);

  const lab = program.command('lab').description('the lab "internet" of simulated vendor endpoints');
  lab
    .command('hosts')
    .description('print hosts-file lines mapping every catalog host to its lab address')
    .addOption(labNetOption())
    .option('--tenant <id>', 'value for the "***" tenant part of catalog hosts', 'lab01')
    .option('--scenarios <dir>', 'scenario directory instead of the built-in one')
    .action((o) => {
      const set = loadScenarios({
        tenant: o.tenant,
        ...(o.scenarios ? { dir: scenarioDir(o.scenarios) } : {}),
      });
      const net = parseLabNet(o.labNet);
      const lines = new Set<string>();
      for (const c of set.catalogs.values()) {
        for (const e of c.endpoints) {
          const host = resolveHost(e.host, set);
          lines.add(`${labAddress(host, net)}\t${host}`);
        }
      }
      process.stdout.write([...lines].join('\n') + '\n');
    });
  lab
    .command('up')
    .description('run the lab origins in the foreground (Ctrl-C stops them) for a proxy we did not start')
    .addOption(labNetOption())
    .option('--profiles <ids>', 'serve the endpoints of these profiles, or "all"', 'all')
    .option('--tenant <id>', 'value for the "***" tenant part of catalog hosts', 'lab01')
    .option('--scenarios <dir>', 'scenario directory instead of the built-in one')
    .action(async (o) => {
      const set = loadScenarios({
        tenant: o.tenant,
        ...(o.scenarios ? { dir: scenarioDir(o.scenarios) } : {}),
      });
      const runDir = new RunDir();
      onCleanup('run directory', () => runDir.remove());
      const pki = await createLabPki(runDir.path);
      const started = await Lab.start({
        pki,
        hosts: labHostsFor(set, selectProfiles(set, list(o.profiles))),
        net: parseLabNet(o.labNet),
      });
      onCleanup('lab origins', () => started.stop());
      for (const l of started.listening)
        process.stdout.write(`${l.transport}://${l.host}:${l.port} on ${l.address}\n`);
      process.stdout.write(`lab root CA (what agents trust): ${pki.labRoot.cert.certFile}\n`);
      process.stdout.write('hosts-file lines:\n' + started.hostsFile());
      process.stdout.write('lab is up; Ctrl-C stops it\n');
      await new Promise<void>(() => {
        // runs until a signal; the signal handler stops everything and exits
      });
    });

  program
    .command('list')
    .description('list proxies, profiles and checks')
    .action(() => {
      const set = loadScenarios();
      process.stdout.write('proxies:\n');
      for (const k of proxyCatalog(set)) process.stdout.write(`  ${k.id.padEnd(18)} ${k.summary}\n`);
      process.stdout.write('profiles:\n');
      for (const p of set.profiles.values()) process.stdout.write(`  ${p.id.padEnd(18)} ${p.title}\n`);
      process.stdout.write('checks:\n');
      for (const c of Object.values(CHECKS)) process.stdout.write(`  ${c.id.padEnd(18)} ${c.title}\n`);
    });
  return program;
}

/** A reader that went away (`proxycheck list | head`) ends the output quietly, not with a stack trace. */
function quietOnBrokenPipe(): void {
  for (const stream of [process.stdout, process.stderr]) {
    stream.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code !== 'EPIPE') throw err;
      process.exitCode = process.exitCode ?? 0;
      stream.destroy();
    });
  }
}

export async function main(argv: string[]): Promise<number> {
  installSignalHandlers();
  quietOnBrokenPipe();
  const out = { code: 0 };
  const program = buildProgram(out);
  try {
    await program.parseAsync(argv, { from: 'user' });
    return out.code;
  } catch (err) {
    if (err instanceof CommanderError) {
      if (
        err.code === 'commander.helpDisplayed' ||
        err.code === 'commander.version' ||
        err.code === 'commander.help'
      )
        return 0;
      process.stderr.write(`proxycheck: ${err.message.replace(/^error: /, '')}\n`);
      return 2;
    }
    if (err instanceof UsageError) {
      process.stderr.write(`proxycheck: ${err.message}\n`);
      return 2;
    }
    if (err instanceof SetupError) {
      process.stderr.write(`proxycheck: setup failed: ${err.message}\n`);
      return 3;
    }
    process.stderr.write(`proxycheck: internal error: ${errorMessage(err)}\n`);
    if (process.env.PROXYCHECK_DEBUG) process.stderr.write(`${(err as Error).stack}\n`);
    return 4;
  } finally {
    await cleanupAll();
  }
}
