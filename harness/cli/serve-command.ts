/**
 * `proxycheck serve <proxy>`: one proxy definition in the foreground, for a real agent. It starts
 * the lab origins (the agent's vendor hosts, through the hosts-file lines it prints) and the proxy,
 * prints what the agent needs (the proxy URL, its credentials, the inspection CA to deploy, the lab
 * root CA) and appends one JSON line per client connection to the flow log. Ctrl-C stops everything.
 */
import { appendFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Command } from 'commander';
import { UsageError } from '../errors.ts';
import { parseLabNet } from '../lab/addresses.ts';
import { Lab } from '../lab/lab.ts';
import { createLabPki } from '../lab/pki.ts';
import { RunDir } from '../lab/rundir.ts';
import { onCleanup } from '../lifecycle.ts';
import { UNREACHABLE } from '../proxies/definition.ts';
import { proxyById } from '../proxies/registry.ts';
import type { Flow } from '../proxies/relay.ts';
import { RelayFront } from '../proxies/relay-front.ts';
import { labHostsFor, selectProfiles } from '../runner/run.ts';
import { loadScenarios } from '../scenarios.ts';
import { labNetOption, list, parseRuntime, scenarioDir } from './options.ts';

export function registerServeCommand(program: Command): void {
  program
    .command('serve')
    .description(
      'run one proxy definition in the foreground for a real agent (with the lab origins); Ctrl-C stops it',
    )
    .argument('<proxy>', 'a definition id (proxycheck list) or a definition file (.yaml)')
    .option('--flow-log <file>', 'append one JSON line per client connection here', 'proxycheck-flows.jsonl')
    .option(
      '--listen <host:port>',
      'where the proxy listens for the agents (e.g. 0.0.0.0:3128 for an agent in a VM)',
      '127.0.0.1:0',
    )
    .option('--profiles <ids>', 'serve the lab endpoints of these profiles, or "all"', 'all')
    .option('--tenant <id>', 'value for the "***" tenant part of catalog hosts', 'lab01')
    .option('--runtime <auto|container|process>', 'where a squid definition runs', 'auto')
    .option('--scenarios <dir>', 'scenario directory (catalogs/, profiles/, proxies/)')
    .addOption(labNetOption())
    .action(async (ref: string, o, cmd: Command) => {
      const set = loadScenarios({
        tenant: o.tenant,
        ...(o.scenarios ? { dir: scenarioDir(o.scenarios) } : {}),
      });
      const profiles = selectProfiles(set, list(o.profiles));
      const listen = parseListen(String(o.listen));
      const engine = proxyById(ref, { runtime: parseRuntime(o.runtime), scenarios: set });
      // a proxy that is not there gets no relay in front: its address must refuse, stay silent or not resolve
      const absent = UNREACHABLE.has(set.proxies.get(engine.id)?.availability ?? 'up');
      if (absent && cmd.getOptionValueSource('listen') === 'cli')
        throw new UsageError(
          `--listen: proxy ${engine.id} is not there (${set.proxies.get(engine.id)?.availability}); nothing listens for it`,
        );
      const flowLog = String(o.flowLog);
      if (!absent) {
        try {
          writeFileSync(flowLog, '', { flag: 'a' });
        } catch (err) {
          throw new UsageError(
            `--flow-log ${flowLog}: cannot write (${(err as NodeJS.ErrnoException).code})`,
          );
        }
      }
      const proxy = absent
        ? engine
        : new RelayFront(engine, {
            onFlow: (flow: Flow) =>
              appendFileSync(flowLog, `${JSON.stringify({ proxy: proxy.id, ...flow })}\n`),
            listen,
          });
      const runDir = new RunDir();
      onCleanup('run directory', () => runDir.remove());
      const pki = await createLabPki(runDir.path);
      const lab = await Lab.start({ pki, hosts: labHostsFor(set, profiles), net: parseLabNet(o.labNet) });
      onCleanup('lab origins', () => lab.stop());
      const started = await proxy
        .start({ lab, runDir, scenarios: set })
        .catch((err: NodeJS.ErrnoException) => {
          if (err.code === 'EADDRINUSE' || err.code === 'EADDRNOTAVAIL' || err.code === 'EACCES')
            throw new UsageError(`--listen ${o.listen}: cannot listen there (${err.code})`);
          throw err;
        });
      onCleanup(`proxy ${proxy.id}`, () => started.stop());
      const hostsFile = join(runDir.path, 'hosts');
      const scripts = started.client?.served ?? [];
      writeFileSync(hostsFile, lab.hostsFile() + scripts.map((s) => `${s.address}\t${s.host}\n`).join(''));
      const say = (line: string) => process.stdout.write(`${line}\n`);
      say(`proxy ${started.id}: ${proxy.describe()}`);
      say(`  ${started.version} (${started.runtime})`);
      const state = started.availability ?? 'up';
      say(
        absent
          ? `proxy URL (configure the agent with it; the proxy is not there: ${state}): ${started.url}`
          : `proxy URL: ${started.url}`,
      );
      if (started.credentials)
        say(`credentials: ${started.credentials.username}:${started.credentials.password} (Basic)`);
      if (started.inspectionCa) {
        const caFile = join(runDir.path, `${started.id}-inspection-ca.pem`);
        writeFileSync(caFile, started.inspectionCa);
        say(`inspection CA to deploy (the agents trust it, or inspection shows): ${caFile}`);
      }
      say(`lab root CA (the lab origins' issuer; the agents must trust it): ${pki.labRoot.cert.certFile}`);
      say(`hosts-file lines (the agents' vendor hosts on the lab): ${hostsFile}`);
      if (started.client && started.client.autoDetect !== 'none')
        say(`the agent's machine: ${started.client.describe()}`);
      for (const s of scripts) say(`proxy script: ${s.url} (on ${s.address}, in the hosts-file lines)`);
      if (!absent) say(`flow log (one JSON line per connection): ${flowLog}`);
      say(absent ? `proxy is ${state}; the lab is up; Ctrl-C stops it` : 'proxy is up; Ctrl-C stops it');
      await new Promise<void>(() => {
        // runs until a signal; the signal handler stops everything and exits
      });
    });
}

/** `host:port`, `[v6]:port` or `:port` (loopback). */
export function parseListen(value: string): { host: string; port: number } {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]*)):(\d{1,5})$/.exec(value);
  const port = Number(m?.[3]);
  if (!m || port > 65535)
    throw new UsageError(`--listen must be host:port (e.g. 127.0.0.1:3128), not "${value}"`);
  return { host: m[1] ?? (m[2] || '127.0.0.1'), port };
}
