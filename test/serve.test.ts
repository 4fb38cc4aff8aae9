/**
 * `proxycheck serve <file>` as a user runs it: a child process serving a definition (Basic
 * authentication, inspecting one host under its own CA subject), used by an outside client (curl)
 * with the URL, credentials and CA files it prints; one flow-log line per client connection; Ctrl-C
 * (SIGINT) stops it with exit 130, closing the tunnel still open, and nothing listens afterwards.
 */
import { execFile } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import type { Flow } from '../harness/proxies/relay.ts';
import { cli, foreground } from './helpers/cli.ts';
import { labNet } from './helpers/lab-net.ts';
import { requireComponent } from './helpers/requirements.ts';
import { listening } from './helpers/script-server.ts';

const CURL = '/usr/bin/curl';
const HOST = 'south-br.agent-api.analyzer.flexxible.com';
const SUBJECT = 'CN=Serve Test Root, O=Test';
const UP = 'proxy is up; Ctrl-C stops it';

/** A flow-log line: the relay's flow and the proxy it went through. */
type FlowLine = Flow & { proxy: string };

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs curl with a deadline; its exit code is part of the answer, not an error. */
function curl(args: string[], timeoutMs = 20_000): Promise<Run> {
  return new Promise((resolve, reject) => {
    execFile(CURL, args, { timeout: timeoutMs, encoding: 'utf8' }, (err, stdout, stderr) => {
      const e = err as (NodeJS.ErrnoException & { code?: unknown; killed?: boolean }) | null;
      if (e?.killed) return reject(new Error(`curl ${args.join(' ')}: not done within ${timeoutMs} ms`));
      if (e && typeof e.code !== 'number') return reject(e);
      resolve({ code: e ? (e.code as unknown as number) : 0, stdout, stderr });
    });
  });
}

/** Resolves with the exit code, or rejects naming the deadline. */
function exit(exited: Promise<number | null>, deadlineMs: number): Promise<number | null> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`proxycheck serve did not exit within ${deadlineMs} ms of SIGINT`)),
      deadlineMs,
    );
    exited.then((code) => {
      clearTimeout(timer);
      resolve(code);
    });
  });
}

/** A CONNECT with credentials whose tunnel stays open (the caller closes it); resolves on the 200. */
function openTunnel(port: number, user: string, pass: string): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port }, () => {
      const auth = Buffer.from(`${user}:${pass}`).toString('base64');
      s.write(
        `CONNECT ${HOST}:443 HTTP/1.1\r\nHost: ${HOST}:443\r\nProxy-Authorization: Basic ${auth}\r\n\r\n`,
      );
    });
    let head = '';
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error('no CONNECT answer within 10000 ms'));
    }, 10_000);
    s.on('data', function onData(d: Buffer) {
      head += d.toString('latin1');
      if (!head.includes('\r\n\r\n')) return;
      s.off('data', onData);
      clearTimeout(timer);
      if (/^HTTP\/1\.1 200 /.test(head)) resolve(s);
      else {
        s.destroy();
        reject(new Error(`CONNECT answered ${head.split('\r\n')[0]}`));
      }
    });
    s.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

function tmp(t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'proxycheck-serve-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

const curlProblem = existsSync(CURL) ? undefined : `no ${CURL} (apt-get install curl)`;

t.test(
  'serve: a real client through the served proxy, a flow line per connection, Ctrl-C stops it',
  requireComponent(t, 'curl', curlProblem),
  async (t) => {
    const dir = tmp(t);
    const octet = await labNet(t);
    const file = join(dir, 'serve-test.yaml');
    writeFileSync(
      file,
      [
        'id: serve-test',
        'engine: chain',
        'auth: basic',
        'inspection:',
        '  mode: only',
        `  hosts: [${HOST}]`,
        `  caSubject: '${SUBJECT}'`,
        '',
      ].join('\n'),
    );
    const flowLog = join(dir, 'flows.jsonl');
    const t0 = Date.now();
    const served = await foreground(
      t,
      ['serve', file, '--flow-log', flowLog, '--lab-net', String(octet), '--profiles', 'flexxagent-brazil'],
      UP,
    );
    const { child, exited } = served;
    const stdout = served.stdout();
    t.comment(`up ${Date.now() - t0} ms after spawn`);

    // what it prints: the URL, the credentials, the CA to deploy, the lab root and the hosts lines
    const line = (re: RegExp) => re.exec(stdout)?.[1] ?? '';
    const url = line(/^proxy URL: (\S+)$/m);
    t.match(url, /^http:\/\/127\.0\.0\.1:\d+$/, 'a proxy URL on loopback');
    const port = Number(new URL(url).port);
    const [user, pass] = line(/^credentials: (\S+) \(Basic\)$/m).split(':') as [string, string];
    t.ok(user && pass, `credentials printed (${user})`);
    const caFile = line(/^inspection CA to deploy .*: (\S+\.pem)$/m);
    const rootFile = line(/^lab root CA .*: (\S+)$/m);
    const hostsFile = line(/^hosts-file lines .*: (\S+)$/m);
    t.match(stdout, `flow log (one JSON line per connection): ${flowLog}`);
    for (const f of [caFile, rootFile, hostsFile]) t.ok(f && existsSync(f), `${f} exists while serving`);
    const ca = new X509Certificate(readFileSync(caFile));
    t.equal(ca.subject.split('\n').join(', '), SUBJECT, 'the inspection CA has the definition’s subject');
    t.ok(ca.ca, 'and is a CA');
    const hostsLine = readFileSync(hostsFile, 'utf8')
      .split('\n')
      .find((l) => l.endsWith(`\t${HOST}`));
    t.match(
      hostsLine,
      new RegExp(`^127\\.${octet}\\.\\d+\\.\\d+\\t`),
      'the hosts file points the host at the lab',
    );
    const origin = hostsLine?.split('\t')[0] ?? '';

    // curl through the proxy with the printed credentials, trusting the inspection CA: the lab
    // origin echoes the body, and the certificate curl saw was issued by the definition's CA
    const body = join(dir, 'report.json');
    writeFileSync(body, JSON.stringify({ agent: 'curl', filler: 'x'.repeat(4000) }));
    const target = `https://${HOST}/echo/agent/report`;
    const ok = await curl([
      '-sS',
      '-v',
      '--max-time',
      '15',
      '-x',
      `http://${user}:${pass}@127.0.0.1:${port}`,
      '--cacert',
      caFile,
      '--data-binary',
      `@${body}`,
      '-H',
      'Content-Type: application/json',
      target,
    ]);
    t.equal(ok.code, 0, `curl through the proxy: ${ok.stderr.split('\n').slice(-3).join(' | ')}`);
    const echo = JSON.parse(ok.stdout) as { requestLine: string; bodyBytes: number };
    t.equal(echo.requestLine, 'POST /echo/agent/report HTTP/1.1', 'the lab origin answered');
    t.equal(echo.bodyBytes, readFileSync(body).length, 'with the whole body');
    t.match(
      ok.stderr,
      /issuer: CN ?= ?Serve Test Root[;,] ?O ?= ?Test/,
      'curl saw the inspection CA as issuer',
    );
    t.match(ok.stderr, /CONNECT tunnel established, response 200|HTTP\/1\.1 200 Connection Established/);

    // trusting only the lab root, curl refuses the re-signed certificate: the host is inspected
    const refused = await curl([
      '-sS',
      '--max-time',
      '15',
      '-x',
      `http://${user}:${pass}@127.0.0.1:${port}`,
      '--cacert',
      rootFile,
      target,
    ]);
    t.equal(refused.code, 60, `not trusted with the lab root alone: ${refused.stderr.trim()}`);

    // wrong credentials: the proxy's 407
    const denied = await curl([
      '-sS',
      '-v',
      '--max-time',
      '15',
      '-x',
      `http://${user}:not-${pass}@127.0.0.1:${port}`,
      '--cacert',
      caFile,
      target,
    ]);
    t.not(denied.code, 0, 'curl fails with wrong credentials');
    t.match(denied.stderr, /HTTP\/1\.1 407 Proxy Authentication Required/);

    // a tunnel still open at Ctrl-C
    const held = await openTunnel(port, user, pass);
    const heldClosed = new Promise<void>((resolve) => held.once('close', () => resolve()));
    held.on('error', () => {
      // the relay destroys it at stop
    });
    const heldPort = held.localPort;

    const tInt = Date.now();
    child.kill('SIGINT');
    const code = await exit(exited, 20_000);
    t.comment(`exit ${code} ${Date.now() - tInt} ms after SIGINT`);
    t.equal(code, 130, 'exit 130 after SIGINT');
    t.match(served.stderr(), /SIGINT received, stopping everything we started/);
    await heldClosed;
    t.pass('the open tunnel was closed');
    t.equal(await listening('127.0.0.1', port), false, 'nothing listens on the proxy port after exit');
    t.equal(await listening(origin, 443), false, 'nor on the lab origin');
    t.notOk(existsSync(caFile), 'the run directory (with the CA files) is removed');

    // the flow log: one JSON line per client connection
    const flows = readFileSync(flowLog, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as FlowLine);
    t.equal(
      flows.length,
      4,
      `four connections, four lines:\n${flows.map((f) => JSON.stringify(f)).join('\n')}`,
    );
    for (const f of flows) {
      t.equal(f.proxy, 'serve-test');
      t.match(f.client, /^127\.0\.0\.1:\d+$/);
      t.ok(!Number.isNaN(Date.parse(f.startedAt)), `startedAt ${f.startedAt}`);
      t.equal(f.method, 'CONNECT');
      t.equal(f.target, `${HOST}:443`);
      t.ok(f.bytesUp > 0 && f.bytesDown > 0, `bytes both ways (${f.bytesUp} up, ${f.bytesDown} down)`);
      t.ok(typeof f.durationMs === 'number' && f.durationMs >= 0, `durationMs ${f.durationMs}`);
      t.ok(typeof f.ended === 'string' && f.ended.length > 0, `ended: ${f.ended}`);
    }
    const ok200 = flows.filter((f) => f.status === 200);
    const no407 = flows.filter((f) => f.status === 407);
    t.equal(ok200.length, 3, 'three tunnels opened (200)');
    t.equal(no407.length, 1, 'one refused for its credentials (407)');
    t.equal(no407[0]?.statusText, 'Proxy Authentication Required');
    t.equal(no407[0]?.requests, 1);
    const stopped = flows.find((f) => f.client === `127.0.0.1:${heldPort}`);
    t.equal(stopped?.ended, 'relay stopped', 'the tunnel open at Ctrl-C ends "relay stopped"');
    t.equal(stopped?.status, 200);
    const carried = ok200.filter((f) => f !== stopped);
    t.ok(
      carried.some((f) => f.ended === 'client closed' && f.bytesUp > 4000),
      'the curl tunnel carried the report and was closed by the client',
    );
  },
);

t.test('serve --listen: the agents reach the proxy where it is told to listen', async (t) => {
  const octet = await labNet(t);
  // a free port on another loopback address, as an agent in a VM would use the host's address
  const port = await new Promise<number>((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.3', () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
  const dir = tmp(t);
  const served = await foreground(
    t,
    ['serve', 'chain-plain', '--listen', `127.0.0.3:${port}`, '--flow-log', join(dir, 'f.jsonl')].concat([
      '--lab-net',
      String(octet),
      '--profiles',
      'flexxagent-brazil',
    ]),
    UP,
  );
  const { child, exited } = served;
  const stdout = served.stdout();
  t.match(stdout, `proxy URL: http://127.0.0.3:${port}\n`);
  t.ok(await listening('127.0.0.3', port), 'the proxy listens there');
  // a second serve on the same address: one line, exit 2
  const other = String(await labNet(t));
  const taken = await cli(
    ['serve', 'chain-plain', '--listen', `127.0.0.3:${port}`, '--lab-net', other].concat([
      '--flow-log',
      join(dir, 'taken.jsonl'),
    ]),
  );
  t.equal(taken.code, 2);
  t.equal(taken.stderr.trim(), `proxycheck: --listen 127.0.0.3:${port}: cannot listen there (EADDRINUSE)`);
  const bad = await cli([
    'serve',
    'chain-plain',
    '--listen',
    'everywhere',
    '--flow-log',
    join(dir, 'bad.jsonl'),
  ]);
  t.equal(bad.code, 2);
  t.match(bad.stderr, /--listen must be host:port/);
  t.notOk(existsSync(join(dir, 'bad.jsonl')), 'bad usage touches no file');
  child.kill('SIGINT');
  t.equal(await exit(exited, 10_000), 130);
  t.notOk(await listening('127.0.0.3', port), 'nothing left listening');
});

t.test(
  'serve a proxy that is down: its address refuses, the WPAD script is served and names a proxy that works',
  requireComponent(t, 'curl', curlProblem),
  async (t) => {
    const octet = await labNet(t);
    const served = await foreground(
      t,
      ['serve', 'down-pac', '--lab-net', String(octet), '--profiles', 'flexxagent-brazil'],
      'proxy is refused; the lab is up; Ctrl-C stops it',
    );
    const stdout = served.stdout();
    const line = (re: RegExp) => re.exec(stdout)?.[1] ?? '';
    const url = line(/^proxy URL \(configure the agent with it; the proxy is not there: refused\): (\S+)$/m);
    t.match(
      url,
      new RegExp(`^http://127\\.${octet}\\.\\d+\\.\\d+:3128$`),
      'the configured address is a lab address',
    );
    const { hostname, port } = new URL(url);
    t.equal(await listening(hostname, Number(port)), false, 'nothing listens there: refused');
    t.notMatch(stdout, /flow log/, 'no relay, so no flow log');
    const script =
      /^proxy script: (http:\/\/wpad\.proxycheck\.test\/wpad\.dat) \(on (127\.\d+\.\d+\.\d+),/m.exec(stdout);
    t.ok(script, 'the WPAD script URL and its address are printed');
    const hostsFile = line(/^hosts-file lines .*: (\S+)$/m);
    t.match(
      readFileSync(hostsFile, 'utf8'),
      `${script?.[2]}\twpad.proxycheck.test`,
      'and in the hosts-file lines',
    );
    // fetch the script as a machine would, by name through the printed address
    const pac = await curl([
      '-sS',
      '--max-time',
      '10',
      '--resolve',
      `wpad.proxycheck.test:80:${script?.[2]}`,
      'http://wpad.proxycheck.test/wpad.dat',
    ]);
    t.equal(pac.code, 0, pac.stderr);
    t.match(pac.stdout, /function FindProxyForURL/);
    const backup = /PROXY (127\.0\.0\.1:\d+); DIRECT/.exec(pac.stdout)?.[1];
    t.ok(backup, `the script names the backup proxy by address (${backup})`);
    // the proxy the script names works: curl reaches a lab origin through it
    const hostsLine = readFileSync(hostsFile, 'utf8')
      .split('\n')
      .find((l) => l.endsWith(`\t${HOST}`));
    const rootFile = line(/^lab root CA .*: (\S+)$/m);
    const through = await curl([
      '-sS',
      '--max-time',
      '15',
      '-x',
      `http://${backup}`,
      '--cacert',
      rootFile,
      `https://${HOST}/echo/x`,
    ]);
    t.equal(through.code, 0, `curl through the scripted proxy: ${through.stderr.trim()}`);
    t.match(through.stdout, /"requestLine":"GET \/echo\/x HTTP\/1\.1"/);
    t.ok(hostsLine);
    served.child.kill('SIGINT');
    t.equal(await exit(served.exited, 20_000), 130);
    t.equal(await listening(script?.[2] ?? '', 80), false, 'the script server is gone');
    t.equal(await listening('127.0.0.1', Number(backup?.split(':')[1])), false, 'and the backup proxy');
  },
);
