/** `proxycheck load`: fleet load through one proxy (harness/load/). */
import { writeFileSync } from 'node:fs';
import { type Command, Option } from 'commander';
import { UsageError } from '../errors.ts';
import { parseLabNet } from '../lab/addresses.ts';
import { PHASES, type Phase } from '../load/histograms.ts';
import { parseMix } from '../load/model.ts';
import { renderLoadHtml, renderLoadText } from '../load/report.ts';
import { DEFAULT_SLO, type LoadReport, runLoad, type Slo } from '../load/run.ts';
import { ExternalProxy } from '../proxies/external.ts';
import { proxyById } from '../proxies/registry.ts';
import { loadScenarios } from '../scenarios.ts';
import { labNetOption, parseRuntime, parseSeconds, scenarioDir } from './options.ts';

/** Profile seconds × this = real seconds under load (keep-alives every 5 s become every 0.5 s). */
export const DEFAULT_LOAD_TIME_SCALE = 0.1;
export const DEFAULT_MIX = 'flexxagent=70,flexx-analyzer=10,remote-assistance=10,vpro-cira=10';

function whole(value: string, flag: string): number {
  if (!/^\d+$/.test(value.trim()) || Number(value) < 1)
    throw new UsageError(`${flag} must be a whole number of at least 1, not "${value}"`);
  return Number(value);
}

/** `connect=1000,tls=500`: p99 thresholds in ms per phase. */
function parseSlo(raw: string | undefined, errors: string | undefined, drops: string | undefined): Slo {
  const slo: Slo = { ...DEFAULT_SLO };
  if (raw !== undefined) {
    slo.p99 = raw.split(',').map((part) => {
      const m = /^\s*(\w+)=(\d+(?:\.\d+)?)\s*$/.exec(part);
      if (!m || !(PHASES as readonly string[]).includes(m[1] as string))
        throw new UsageError(`--slo-p99: "${part}" is not phase=ms (phases: ${PHASES.join(', ')})`);
      return { phase: m[1] as Phase, ms: Number(m[2]) };
    });
  }
  if (errors !== undefined) {
    const n = Number(errors);
    if (!/^\s*\d+(\.\d+)?\s*$/.test(errors) || n > 100)
      throw new UsageError(`--max-error-percent must be a number from 0 to 100, not "${errors}"`);
    slo.maxErrorRate = n / 100;
  }
  if (drops !== undefined) {
    if (!/^\d+$/.test(drops.trim()))
      throw new UsageError(`--max-drops must be a whole number, not "${drops}"`);
    slo.maxDrops = Number(drops);
  }
  return slo;
}

export function registerLoadCommand(program: Command, out: { code: number }): void {
  program
    .command('load')
    .description(
      'N simulated agents through one proxy on their real schedules (compressed): latency per phase, errors, drops and a capacity verdict',
    )
    .addOption(
      new Option('--proxies <id>', 'the proxy definition to start (id or .yaml file)').conflicts('proxy'),
    )
    .option('--proxy <url>', 'an existing proxy (http://[user:pass@]host:port) that reaches the lab')
    .option('--agents <n>', 'simulated agents', '100')
    .option(
      '--steps <list>',
      'step mode: agent counts to run in turn (e.g. 100,200,400) until the SLO breaks',
    )
    .option('--mix <weights>', 'profile weights (profile=weight,...)', DEFAULT_MIX)
    .option('--duration <seconds>', 'real seconds each run (or step) lasts', '20')
    .option('--ramp <seconds>', 'real seconds over which the agents start', '5')
    .option(
      '--time-scale <factor>',
      'multiply the profiles’ schedules (1 = real time)',
      String(DEFAULT_LOAD_TIME_SCALE),
    )
    .option('--slo-p99 <phase=ms,...>', 'p99 thresholds for the capacity verdict', 'connect=1000')
    .option('--max-error-percent <n>', 'errors per session opened allowed, in percent', '0')
    .option('--max-drops <n>', 'held tunnels allowed to drop', '0')
    .option('--trust-corporate-ca', "the agents trust the proxy's inspection CA")
    .option('--json <file>', 'write the proxycheck/load@1 JSON here')
    .option('--html <file>', 'write the HTML page (charts inlined) here')
    .option('--runtime <auto|container|process>', 'where squid proxies run', 'auto')
    .option('--tenant <id>', 'value for the "***" tenant part of catalog hosts', 'lab01')
    .option('--scenarios <dir>', 'scenario directory (catalogs/, profiles/, proxies/)')
    .addOption(labNetOption())
    .action(async (o) => {
      if (!o.proxies && !o.proxy) throw new UsageError('load: give --proxies <definition> or --proxy <url>');
      const scenarios = loadScenarios({
        tenant: o.tenant,
        ...(o.scenarios ? { dir: scenarioDir(o.scenarios) } : {}),
      });
      const steps = o.steps
        ? String(o.steps)
            .split(',')
            .map((s) => whole(s, '--steps'))
        : [whole(String(o.agents), '--agents')];
      const timeScale = Number(o.timeScale);
      if (!(timeScale > 0 && timeScale <= 1))
        throw new UsageError(`--time-scale must be above 0 and at most 1, not "${o.timeScale}"`);
      const proxy = o.proxy
        ? new ExternalProxy({ url: String(o.proxy) })
        : proxyById(String(o.proxies), { runtime: parseRuntime(o.runtime), scenarios });
      const tty = process.stderr.isTTY;
      const report: LoadReport = await runLoad({
        proxy,
        scenarios,
        mix: parseMix(String(o.mix), scenarios),
        steps,
        durationSeconds: parseSeconds(String(o.duration), '--duration') as number,
        rampSeconds:
          Number(o.ramp) >= 0 ? Number(o.ramp) : (parseSeconds(String(o.ramp), '--ramp') as number),
        timeScale,
        labNet: parseLabNet(o.labNet),
        slo: parseSlo(o.sloP99, o.maxErrorPercent, o.maxDrops),
        trustInspectionCa: Boolean(o.trustCorporateCa),
        onProgress: (line) => {
          if (tty) process.stderr.write(`\r\x1b[2K${line}`);
        },
      });
      if (tty) process.stderr.write('\r\x1b[2K');
      if (o.json) writeFileSync(String(o.json), `${JSON.stringify(report, null, 2)}\n`);
      if (o.html) writeFileSync(String(o.html), renderLoadHtml(report));
      process.stdout.write(renderLoadText(report));
      out.code = report.capacity.sustained ? 0 : 1;
    });
}
