/**
 * `proxycheck validate` against proxies we did not start through our adapters: a proxy-chain
 * server configured here by hand, resolving lab hosts only from `proxycheck lab hosts` output.
 */
import { execFileSync } from 'node:child_process';
import t, { type Test } from 'tap';
import { loadScenarios } from '../harness/scenarios.ts';
import { BIN, cli } from './helpers/cli.ts';
import { resultsPerProxy } from './helpers/counts.ts';
import { customerProxy } from './helpers/customer-proxy.ts';
import { labNet } from './helpers/lab-net.ts';

/** hosts-file lines for lab net `net`, as a customer would feed them to their proxy. */
function labHosts(net: number): Map<string, string> {
  return new Map(
    execFileSync(process.execPath, [BIN, 'lab', 'hosts', '--lab-net', String(net)], { encoding: 'utf8' })
      .trim()
      .split('\n')
      .map((l) => {
        const [addr, name] = l.split('\t');
        return [name ?? '', addr ?? ''] as const;
      }),
  );
}

/**
 * A lab net for test `t` and the customer's proxy, resolving from that net's `lab hosts` table
 * (or from `opts.hosts`).
 */
async function handProxy(
  t: Test,
  opts: { auth?: { username: string; password: string }; hosts?: Map<string, string> } = {},
): Promise<{ net: string; proxy: string }> {
  const net = await labNet(t);
  const table = opts.hosts ?? labHosts(net);
  return { net: String(net), proxy: await customerProxy(t, (host) => table.get(host), opts.auth) };
}

t.test('a proxy fed the lab hosts passes the FlexxAgent slice', async (t) => {
  const { net, proxy } = await handProxy(t);
  const r = await cli([
    'validate',
    '--proxy',
    `http://${proxy}`,
    '--lab-net',
    net,
    '--profiles',
    'flexxagent',
    '--details',
  ]);
  t.equal(r.code, 0, r.stderr);
  t.match(
    r.stdout,
    /external\s+flexxagent\s+west-eu\.agent-api\.analyzer\.flexxible\.com:443\s+pinning\s+PASS\s+yes/,
  );
  const n = resultsPerProxy(loadScenarios(), ['flexxagent']);
  t.match(
    r.stdout,
    `${n} results: ${n} pass, 0 fail`,
    'every flexxagent exchange (reports, IoT Hub, Service Bus, ipify, downloads) passes',
  );
});

t.test('credentials in the URL, in flags or in the environment; never printed', async (t) => {
  const auth = { username: 'corp', password: 's3cr3t-pw' };
  const { net, proxy } = await handProxy(t, { auth });
  const viaUrl = await cli([
    'validate',
    '--proxy',
    `http://corp:s3cr3t-pw@${proxy}`,
    '--lab-net',
    net,
    '--profiles',
    'flexxagent',
  ]);
  t.equal(viaUrl.code, 0, viaUrl.stderr);
  const viaEnv = await cli(
    [
      'validate',
      '--proxy',
      `http://${proxy}`,
      '--proxy-user',
      'corp',
      '--lab-net',
      net,
      '--profiles',
      'flexxagent',
    ],
    { env: { PROXYCHECK_PROXY_PASSWORD: 's3cr3t-pw' } },
  );
  t.equal(viaEnv.code, 0, viaEnv.stderr);
  const wrong = await cli([
    'validate',
    '--proxy',
    `http://${proxy}`,
    '--proxy-user',
    'corp',
    '--proxy-password',
    'nope-nope',
    '--details',
    '--lab-net',
    net,
    '--profiles',
    'flexxagent',
  ]);
  t.equal(wrong.code, 1, 'wrong credentials: a clear verdict, not a crash');
  t.match(wrong.stdout, /connect\s+FAIL\s+NO \(expected pass\)\s+CONNECT .* answered "HTTP\/1\.1 407 /);
  for (const r of [viaUrl, viaEnv, wrong]) {
    t.notMatch(r.stdout + r.stderr, /s3cr3t-pw|nope-nope/, 'passwords never printed');
  }
});

t.test('bad URL, unreachable proxy and a proxy that does not know the lab: one line, exit 2', async (t) => {
  const { net, proxy: blind } = await handProxy(t, { hosts: new Map() });
  const cases: Array<[string[], RegExp]> = [
    [['validate', '--proxy', 'not a url'], /--proxy must be a URL/],
    [
      ['validate', '--proxy', 'socks5://127.0.0.1:1080'],
      /only http:\/\/ and https:\/\/ proxies are supported, not socks5:/,
    ],
    [
      ['validate', '--proxy', 'http://127.0.0.1:9', '--lab-net', net],
      /proxy 127\.0\.0\.1:9 unreachable: .*ECONNREFUSED/,
    ],
    [
      ['validate', '--proxy', `http://${blind}`, '--lab-net', net, '--profiles', 'flexxagent'],
      /proxycheck lab hosts/,
    ],
    [['validate', '--proxy', 'http://127.0.0.1:9', '--proxy-password', 'x'], /without a user/],
  ];
  for (const [args, msg] of cases) {
    const r = await cli(args);
    t.equal(r.code, 2, args.join(' '));
    t.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    t.match(r.stderr, msg);
    t.notMatch(r.stderr, /\n\s+at /, 'no stack trace');
  }
});
