/**
 * docs/extending.md walked through for real: a new check, a new exchange kind that observes it,
 * and a new proxy product (an adapter plus its config renderer, run as a separate program through
 * the proxy toolkit), each defined here and run by the one runner over real sockets. The check is
 * shown passing, failing on a proxy that really corrupts bytes, and not run when the tunnel was
 * refused; a kind that hits our own bug gives harness_fail, never a proxy fail.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { openChannel } from '../harness/agent/channel.ts';
import { registerKind } from '../harness/agent/kinds/index.ts';
import { type ExchangeKind, since } from '../harness/agent/kinds/types.ts';
import { registerCheck } from '../harness/checks/index.ts';
import { type CheckDefinition, ROUTE } from '../harness/checks/types.ts';
import { HarnessError } from '../harness/errors.ts';
import type { CheckResult } from '../harness/model.ts';
import { registerProxyKind } from '../harness/proxies/registry.ts';
import { ADDRESS_IN_USE, withPortRetry } from '../harness/proxies/toolkit/ports.ts';
import { launchProcess, tail } from '../harness/proxies/toolkit/process.ts';
import {
  type ProxyContext,
  type ProxyUnderTest,
  requireLab,
  type StartedProxy,
} from '../harness/proxies/types.ts';
import { runMatrix } from '../harness/runner/run.ts';
import { loadScenarios } from '../harness/scenarios.ts';
import { labNet } from './helpers/lab-net.ts';
import { scenarioCopy } from './helpers/scenario-copy.ts';

// 1. A check: one module's worth of definition (docs/extending.md, "A check").
const lineEcho: CheckDefinition = {
  id: 'line-echo',
  title: 'Line echoed intact',
  dependsOn: [ROUTE],
  blocks: 'no line was echoed',
  explain: (c) => `A text line sent through the tunnel to ${c.host}:${c.port} comes back byte-identical.`,
  remediation: () => 'Something in the tunnel rewrites bytes: let the tunnel carry them untouched.',
};

// 2. An exchange kind that observes it (docs/extending.md, "An exchange kind").
const LINE = 'hello, proxy\n';
const echoLineKind: ExchangeKind = {
  id: 'echo-line',
  options: { line: { type: 'string', minLength: 1 } },
  checks: () => ['connect', 'line-echo'],
  lab: (x) => [{ port: x.port, transport: 'tcp', service: 'echo' }],
  async run(ctx) {
    const out = new Map();
    const channel = await openChannel(ctx, out, { dependents: ['line-echo'], tls: false });
    if (!channel) return out;
    const line = (ctx.exchange as { line?: string }).line ?? LINE;
    if (line === 'BUG') throw new HarnessError('the kind could not read its own option');
    const t0 = performance.now();
    const got = await new Promise<string>((resolve) => {
      let buf = '';
      const timer = setTimeout(() => resolve(buf), ctx.timeouts.answerMs);
      channel.socket.on('data', (d: Buffer) => {
        buf += d.toString('latin1');
        if (buf.length >= line.length) {
          clearTimeout(timer);
          resolve(buf);
        }
      });
      channel.socket.resume();
      channel.socket.write(line);
    });
    channel.socket.destroy();
    out.set('line-echo', {
      outcome: got === line ? 'pass' : 'fail',
      message:
        got === line
          ? `${line.length} bytes came back intact`
          : `sent ${JSON.stringify(line)}, got ${JSON.stringify(got)}`,
      evidence: { sent: line, received: got },
      durationMs: since(t0),
    });
    return out;
  },
};

// 3. A proxy product: its config renderer and its adapter (docs/extending.md, "A proxy product").
const MINI = new URL('../fixtures/extending/mini-proxy.mjs', import.meta.url).pathname;

export function renderMiniConfig(o: {
  port: number;
  hosts: Record<string, string>;
  mangle: boolean;
}): string {
  return JSON.stringify({ port: o.port, connectPorts: [443, 7007], hosts: o.hosts, mangle: o.mangle });
}

class MiniProxy implements ProxyUnderTest {
  constructor(
    readonly id: string,
    private readonly mangle = false,
  ) {}
  describe(): string {
    return `mini-proxy${this.mangle ? ' (corrupts bytes)' : ''}`;
  }
  async start(ctx: ProxyContext): Promise<StartedProxy> {
    const lab = requireLab(ctx, this.id);
    const t0 = performance.now();
    const hosts: Record<string, string> = Object.fromEntries(
      lab
        .hostsFile()
        .split('\n')
        .map((l) => l.split(/\s+/))
        .filter((f) => f.length >= 2 && /^\d/.test(f[0] ?? ''))
        .flatMap(([addr = '', ...names]) => names.map((n) => [n, addr])),
    );
    const proc = await withPortRetry({
      portTaken: (err) => ADDRESS_IN_USE.test(String((err as Error).message)),
      start: async (port) => {
        const file = join(ctx.runDir.path, `${this.id}-${port}.json`);
        writeFileSync(file, renderMiniConfig({ port, hosts, mangle: this.mangle }));
        const p = launchProcess({
          what: `${this.id} (process)`,
          cmd: process.execPath,
          args: [MINI, file],
          cleanupName: (pid) => `${this.id} (pid ${pid})`,
        });
        try {
          await p.ready(/mini-proxy listening on/, {
            awaiting: 'readiness ("mini-proxy listening on")',
            deadlineMs: 10_000,
            problem: () => tail(p.output(), 3),
          });
        } catch (err) {
          await p.stop();
          throw err;
        }
        return { p, port };
      },
    });
    return {
      id: this.id,
      kind: 'plain',
      runtime: 'process',
      version: 'mini-proxy 1',
      url: `http://127.0.0.1:${proc.port}`,
      host: '127.0.0.1',
      port: proc.port,
      startMs: Math.round(performance.now() - t0),
      stop: () => proc.p.stop(),
    };
  }
}

const CATALOG = `id: extending
vendor: proxycheck tests
endpoints:
  - host: line.proxycheck.test
    port: 7007
    transport: tcp
    purpose: a line echo on a port the mini proxy allows
    mustNotInspect: false
    pinned: false
    source: [002_91a244efcc7c778a.txt]
  - host: line.proxycheck.test
    port: 7008
    transport: tcp
    purpose: a line echo on a port the mini proxy refuses
    mustNotInspect: false
    pinned: false
    source: [002_91a244efcc7c778a.txt]
`;
const profile = (id: string, port: number, line?: string) => `id: ${id}
title: one line echoed through the tunnel
source: [002_91a244efcc7c778a.txt]
exchanges:
  - kind: echo-line
    catalog: extending
    host: line.proxycheck.test
    port: ${port}
${line ? `    line: "${line}"\n` : ''}`;

t.test('a new check, kind and proxy product, run by the one runner', async (t) => {
  t.teardown(registerCheck(lineEcho));
  t.teardown(registerKind(echoLineKind));
  t.teardown(
    registerProxyKind({ id: 'mini', summary: 'mini-proxy (fixture)', create: () => new MiniProxy('mini') }),
  );
  const dir = scenarioCopy(t, {
    'catalogs/extending.yaml': CATALOG,
    'profiles/line.yaml': profile('line', 7007),
    'profiles/line-refused.yaml': profile('line-refused', 7008),
    'profiles/line-bug.yaml': profile('line-bug', 7007, 'BUG'),
  });
  const scenarios = loadScenarios({ dir });
  const report = await runMatrix({
    proxies: ['chain-plain', 'mini', new MiniProxy('mini-mangling', true)],
    profiles: ['line', 'line-refused', 'line-bug'],
    scenarios,
    labNet: await labNet(t),
  });
  const get = (proxy: string, profile: string, check: string): CheckResult | undefined =>
    report.results.find((r) => r.proxy === proxy && r.profile === profile && r.check === check);

  for (const proxy of ['chain-plain', 'mini']) {
    const r = get(proxy, 'line', 'line-echo');
    t.equal(r?.outcome, 'pass', `${proxy}: ${r?.message}`);
    t.match(r?.evidence.explain, /comes back byte-identical/, 'explained by the check module');
  }
  t.equal(
    report.proxies.find((p) => p.id === 'mini')?.runtime,
    'process',
    'the product ran as its own program',
  );

  const bad = get('mini-mangling', 'line', 'line-echo');
  t.equal(bad?.outcome, 'fail', 'fails on a proxy that really corrupts the bytes');
  t.match(bad?.message, /got "HELLO, PROXY/);
  t.match(bad?.remediation, /rewrites bytes/, "the check's remedy");

  const refusedConnect = get('mini', 'line-refused', 'connect');
  t.equal(refusedConnect?.outcome, 'fail');
  t.match(refusedConnect?.message, /403 Forbidden/);
  const notRun = get('mini', 'line-refused', 'line-echo');
  t.equal(notRun?.outcome, 'dependency_fail', 'not run after a refused CONNECT: derived from dependsOn');
  t.equal(notRun?.evidence.dependsOn, 'connect');

  const bug = get('chain-plain', 'line-bug', 'line-echo');
  t.equal(bug?.outcome, 'harness_fail', 'our own bug is harness_fail, not a proxy fail');
  t.match(bug?.message, /could not read its own option/);
});

t.test('the new kind declares its options: one it does not take is a scenario error', async (t) => {
  t.teardown(registerCheck(lineEcho));
  t.teardown(registerKind(echoLineKind));
  const dir = scenarioCopy(t, {
    'catalogs/extending.yaml': CATALOG,
    'profiles/line.yaml': `${profile('line', 7007)}    requests:\n      - { name: x, method: GET, path: /x }\n`,
  });
  t.throws(
    () => loadScenarios({ dir }),
    /profiles\/line\.yaml: \/exchanges\/0\/requests is not an option of exchange kind echo-line \(it takes: line\)/,
  );
});
