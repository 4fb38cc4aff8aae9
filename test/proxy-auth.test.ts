/**
 * The `proxy-auth` check on real dances: Negotiate against squid's negotiate_kerberos_auth with a
 * real MIT KDC (harness/lab/kdc.ts) and a squid.conf written here (not our adapters): a ticket
 * from kinit passes; a principal the realm does not know gets no ticket and the 407 stands, naming
 * Negotiate; a proxy whose keytab no longer matches rejects the principal. In-process proxies show
 * the failures squid will not do: NTLM's connection closed between rounds, and 407 forever.
 */
import { chmodSync, chownSync, mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { openTunnel } from '../harness/agent/tunnel.ts';
import { judgeProxyAuth } from '../harness/checks/proxy-auth.ts';
import { type KerberosRealm, realmProblem, startRealm } from '../harness/lab/kdc.ts';
import { runCommand } from '../harness/proxies/toolkit/command.ts';
import { localUser } from '../harness/proxies/toolkit/process.ts';
import { agentAuth, MAX_AUTH_ROUNDS, type ProxyAuth } from '../harness/route/auth.ts';
import { loadKerberos } from '../harness/route/auth-schemes.ts';
import { baseConf, startSquid } from './helpers/hand-squid.ts';
import { readHead, startRawProxy } from './helpers/raw-proxy.ts';
import { requireComponent, squidProblem } from './helpers/requirements.ts';

async function echoServer(t: Test): Promise<number> {
  const server = net.createServer((s) => s.pipe(s));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  return (server.address() as net.AddressInfo).port;
}

async function connectVia(port: number, auth: ProxyAuth, echo: number) {
  const t0 = performance.now();
  const tun = await openTunnel({
    proxy: { host: '127.0.0.1', port, auth },
    target: { host: '127.0.0.1', port: echo },
    answerTimeoutMs: 10_000,
  });
  if (tun.ok) tun.socket.destroy();
  return { tun, verdict: judgeProxyAuth(`127.0.0.1:${echo}`, tun, Math.round(performance.now() - t0)) };
}

const negotiate = agentAuth({ username: 'agent', password: '', scheme: 'negotiate' }, ['negotiate']);

const kerberosMissing = await loadKerberos().then((k) => (typeof k === 'string' ? k : undefined));
const krbOpts =
  [
    requireComponent(t, 'squid', squidProblem()),
    requireComponent(t, 'the lab Kerberos realm', realmProblem()),
    requireComponent(t, 'the kerberos package', kerberosMissing),
  ].find((o) => o.skip) ?? {};

t.test('Negotiate against a hand-configured squid and a lab KDC', krbOpts, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'proxycheck-test-krb-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  chmodSync(dir, 0o755); // squid's helper reads the keytab as squid's user
  const realm: KerberosRealm = await startRealm(join(dir, 'realm'));
  t.teardown(() => realm.stop());
  const keytab = join(dir, 'http.keytab');
  await realm.principal('HTTP/127.0.0.1', keytab);
  const proxyUser = process.getuid?.() === 0 ? localUser('proxy') : undefined;
  if (proxyUser) chownSync(keytab, proxyUser.uid, proxyUser.gid);
  await realm.principal('agent', join(dir, 'agent.keytab'));
  const ccache = `FILE:${join(dir, 'agent.ccache')}`;
  await realm.kinit('agent', join(dir, 'agent.keytab'), ccache);
  realm.useForAgent(ccache);
  // a second squid whose keytab holds another service's key: it cannot read the agent's ticket
  const otherKeytab = join(dir, 'other.keytab');
  await realm.principal('HTTP/elsewhere.proxycheck.test', otherKeytab);
  if (proxyUser) chownSync(otherKeytab, proxyUser.uid, proxyUser.gid);
  const squidWith = (kt: string) =>
    startSquid(t, '', (d, port) =>
      baseConf(d, port, [
        `auth_param negotiate program /usr/lib/squid/negotiate_kerberos_auth -k ${kt} -s GSS_C_NO_NAME`,
        'auth_param negotiate children 2 startup=1 idle=1',
        'auth_param negotiate keep_alive on',
        'acl authed proxy_auth REQUIRED',
        'http_access allow authed',
        'http_access deny all',
      ]),
    );
  const squid = await squidWith(keytab);
  const wrongKey = await squidWith(otherKeytab);
  const echo = await echoServer(t);

  const good = await connectVia(squid.port, negotiate, echo);
  t.equal(good.verdict.outcome, 'pass', good.verdict.message);
  t.match(good.verdict.evidence, {
    offered: ['Negotiate'],
    used: 'Negotiate',
    rounds: 1,
    connectionKept: true,
  });
  t.match(good.verdict.message, /authenticated with Negotiate .*1 round\(s\) on one connection/);
  t.notMatch(JSON.stringify(good.verdict.evidence), /YII|oYI/, 'no SPNEGO token in the evidence');

  // the proxy cannot read the agent's ticket (its keytab is another service's): the principal is rejected
  const rejected = await connectVia(wrongKey.port, negotiate, echo);
  t.equal(rejected.verdict.outcome, 'fail', rejected.verdict.message);
  t.equal(rejected.verdict.evidence.problem, 'rejected');
  t.match(
    rejected.verdict.message,
    /407 after the agent's Negotiate answer: the proxy rejected its Kerberos principal/,
  );
  t.match(rejected.verdict.remediation, /keytab must hold HTTP\//);

  // a principal the realm does not know gets no ticket: the agent has nothing to answer with
  const stranger = `FILE:${join(dir, 'stranger.ccache')}`;
  const kinit = await runCommand(
    'kinit',
    ['-k', '-t', join(dir, 'agent.keytab'), '-c', stranger, 'stranger'],
    {
      what: 'kinit stranger',
      timeoutMs: 10_000,
      env: { ...process.env, ...realm.env },
    },
  );
  t.not(kinit.code, 0, 'the KDC refuses a ticket to a principal it does not know');
  realm.useForAgent(stranger);
  const unknown = await connectVia(squid.port, negotiate, echo);
  t.equal(unknown.verdict.outcome, 'fail');
  t.equal(unknown.tun.answer?.statusCode, 407);
  t.match(unknown.verdict.message, /407 .*Negotiate/, unknown.verdict.message);
  t.equal(unknown.verdict.evidence.problem, 'cannot');
});

/** A minimal NTLM type 2 message (signature, type, empty target name, flags, challenge). */
function type2(): string {
  const b = Buffer.alloc(48);
  b.write('NTLMSSP\0', 0, 'latin1');
  b.writeUInt32LE(2, 8);
  b.writeUInt32LE(48, 16); // target name offset (empty)
  b.writeUInt32LE(0x00008201, 20); // unicode, NTLM, always sign
  Buffer.from('0123456789abcdef', 'hex').copy(b, 24);
  return b.toString('base64');
}

t.test('a proxy that closes the connection between NTLM rounds: a clear fail', async (t) => {
  const seen = { connections: 0 };
  const p = await startRawProxy('ntlm-closer', (client) => {
    seen.connections++;
    readHead(client, (head) => {
      const closing = /^Proxy-Authorization: NTLM /im.test(head);
      client.end(
        `HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: NTLM${closing ? ` ${type2()}` : ''}\r\nContent-Length: 0\r\n${closing ? 'Connection: close\r\n' : ''}\r\n`,
      );
    });
  });
  t.teardown(() => p.stop());
  // the first 407 closes too: the agent sends its type 1 on the same connection, and it is gone
  const r = await connectVia(p.port, agentAuth({ username: 'u', password: 'p' }, ['ntlm']), 9);
  t.equal(r.verdict.outcome, 'fail');
  t.equal(r.verdict.evidence.problem, 'closed');
  t.match(r.verdict.message, /closed the connection|Connection: close/);
  t.match(r.verdict.message, /NTLM/);
  t.match(r.verdict.remediation, /bound to one connection/);
  t.equal(seen.connections, 1, 'the agent did not start over on a new connection');
});

t.test('a proxy that keeps its connection but answers type 2 with Connection: close', async (t) => {
  const p = await startRawProxy('ntlm-close-at-2', (client) => {
    const onHead = (head: string) => {
      const type1 = /^Proxy-Authorization: NTLM /im.test(head);
      client.write(
        `HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: NTLM${type1 ? ` ${type2()}` : ''}\r\nContent-Length: 0\r\n${type1 ? 'Connection: close\r\n' : ''}\r\n`,
      );
      if (type1) client.end();
      else {
        readHead(client, onHead);
        client.resume();
      }
    };
    readHead(client, onHead);
  });
  t.teardown(() => p.stop());
  const r = await connectVia(p.port, agentAuth({ username: 'u', password: 'p' }, ['ntlm']), 9);
  t.equal(r.verdict.outcome, 'fail');
  t.equal(r.verdict.evidence.problem, 'closed');
  t.equal(r.verdict.evidence.connectionKept, false);
  t.match(r.verdict.message, /round 2\) says Connection: close, so the NTLM handshake could not go on/);
  t.equal(r.tun.authRounds?.length, 1, 'the type 1 went out on the kept connection');
});

t.test('407 forever: a proxy that challenges with a fresh stale nonce every round', async (t) => {
  let n = 0;
  const p = await startRawProxy('stale-forever', (client) => {
    const onHead = () => {
      n++;
      client.write(
        `HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Digest realm="x", nonce="n${n}", qop="auth", stale=true\r\nContent-Length: 0\r\n\r\n`,
      );
      readHead(client, onHead);
      client.resume();
    };
    readHead(client, onHead);
  });
  t.teardown(() => p.stop());
  const r = await connectVia(p.port, agentAuth({ username: 'u', password: 'p' }, ['digest']), 9);
  t.equal(r.verdict.outcome, 'fail');
  t.equal(r.verdict.evidence.problem, 'forever');
  t.equal(r.verdict.evidence.rounds, MAX_AUTH_ROUNDS);
  t.match(r.verdict.message, /challenges forever/);
});
