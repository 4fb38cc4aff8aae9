/**
 * The agent's proxy authentication (harness/route/auth.ts, auth-schemes.ts) against real squid
 * helpers configured by hand: Digest (digest_file_auth) and NTLM (ntlm_fake_auth, which accepts
 * any credentials: it shows the handshake mechanics only), each on one kept-alive connection, a
 * wrong Digest password rejected with a 407, and the agent's scheme choice when several are offered.
 */

import { writeFileSync } from 'node:fs';
import net from 'node:net';
import t, { type Test } from 'tap';
import { openTunnel } from '../harness/agent/tunnel.ts';
import { agentAuth, parseChallenges } from '../harness/route/auth.ts';
import { baseConf, startSquid } from './helpers/hand-squid.ts';
import { requireComponent, squidProblem } from './helpers/requirements.ts';

const opts = requireComponent(t, 'squid', squidProblem());
const HELPERS = '/usr/lib/squid';

async function echoServer(t: Test): Promise<number> {
  const server = net.createServer((s) => s.pipe(s));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  return (server.address() as net.AddressInfo).port;
}

/** A squid asking for `schemes` (auth_param lines), CONNECT to anywhere once authenticated. */
function authSquid(t: Test, params: (dir: string) => string[]) {
  return startSquid(t, '', (dir, port) => {
    writeFileSync(`${dir}/digest-passwd`, 'agent:right-password\n', { mode: 0o644 });
    return baseConf(dir, port, [
      ...params(dir),
      'acl authed proxy_auth REQUIRED',
      'http_access allow authed',
      'http_access deny all',
    ]);
  });
}

const digest = (dir: string) => [
  `auth_param digest program ${HELPERS}/digest_file_auth ${dir}/digest-passwd`,
  'auth_param digest children 2 startup=1 idle=1',
  'auth_param digest realm proxycheck',
];
const ntlm = () => [
  `auth_param ntlm program ${HELPERS}/ntlm_fake_auth`,
  'auth_param ntlm children 2 startup=1 idle=1',
];

async function through(port: number, auth: ReturnType<typeof agentAuth>, echo: number) {
  const tun = await openTunnel({
    proxy: { host: '127.0.0.1', port, auth },
    target: { host: '127.0.0.1', port: echo },
    answerTimeoutMs: 10_000,
  });
  if (tun.ok) {
    const echoed = await new Promise<string>((resolve) => {
      tun.socket.resume();
      tun.socket.once('data', (d) => resolve(d.toString()));
      tun.socket.write('ping');
    });
    tun.socket.destroy();
    return { tun, echoed };
  }
  return { tun, echoed: undefined };
}

t.test('Proxy-Authenticate with several schemes, and quoted commas', async (t) => {
  const c = parseChallenges([
    'Negotiate, NTLM',
    'Digest realm="a, b", nonce="n1", qop="auth,auth-int", algorithm=MD5, Basic realm="x"',
    'NTLM TlRMTVNTUAACAAAAAAAAADAAAAA=',
  ]);
  t.same(
    c.map((x) => x.scheme),
    ['Negotiate', 'NTLM', 'Digest', 'Basic', 'NTLM'],
  );
  t.same(c[2]?.params, { realm: 'a, b', nonce: 'n1', qop: 'auth,auth-int', algorithm: 'MD5' });
  t.equal(c[4]?.token, 'TlRMTVNTUAACAAAAAAAAADAAAAA=');
});

t.test(
  'Digest on real squid: one answered 407 on one connection; a wrong password is a 407',
  opts,
  async (t) => {
    const echo = await echoServer(t);
    const squid = await authSquid(t, digest);
    const good = await through(
      squid.port,
      agentAuth({ username: 'agent', password: 'right-password' }, ['digest']),
      echo,
    );
    t.ok(good.tun.ok, `the tunnel opened: ${good.tun.ok ? '' : good.tun.error}`);
    t.equal(good.echoed, 'ping', 'and carries bytes');
    t.match(good.tun.auth, { offered: ['Digest'], used: 'Digest', rounds: 1, connectionKept: true });
    t.notOk(good.tun.auth?.closedBetweenRounds);
    t.match(good.tun.requestHead, /Proxy-Authorization: Digest <redacted>\r\n/);
    t.notMatch(good.tun.requestHead, /response=/, 'the digest response is redacted');
    t.match(good.tun.authRounds?.[0]?.challenges[0], /nonce=<redacted>/);

    const bad = await through(
      squid.port,
      agentAuth({ username: 'agent', password: 'wrong' }, ['digest']),
      echo,
    );
    t.notOk(bad.tun.ok);
    t.equal(bad.tun.answer?.statusCode, 407, 'the wrong password is refused with a 407');
    t.match(bad.tun.auth, { used: 'Digest', rounds: 1, offered: ['Digest'] });
    t.notOk(bad.tun.auth?.agentCannot, 'a rejection, not a scheme the agent cannot do');
  },
);

t.test('NTLM on real squid (ntlm_fake_auth): type 1 and type 3 on one connection', opts, async (t) => {
  const echo = await echoServer(t);
  const squid = await authSquid(t, ntlm);
  const r = await through(
    squid.port,
    agentAuth({ username: 'agent', password: 'pw', domain: 'LAB' }, ['ntlm']),
    echo,
  );
  t.ok(r.tun.ok, `the tunnel opened: ${r.tun.ok ? '' : r.tun.error}`);
  t.equal(r.echoed, 'ping');
  t.match(r.tun.auth, { offered: ['NTLM'], used: 'NTLM', rounds: 2, connectionKept: true });
  t.equal(r.tun.authRounds?.[1]?.challenges[0], 'NTLM <redacted>', 'the type 2 token is redacted');
});

t.test('a scheme the agent cannot do: the 407 stands and says what was offered', opts, async (t) => {
  const echo = await echoServer(t);
  const squid = await authSquid(t, (dir) => [...ntlm(), ...digest(dir)]);
  const r = await through(squid.port, agentAuth({ username: 'agent', password: 'pw' }, ['basic']), echo);
  t.notOk(r.tun.ok);
  t.equal(r.tun.answer?.statusCode, 407);
  t.match(r.tun.auth?.agentCannot, /offers NTLM, Digest; the agent speaks Basic/);
  // an agent that speaks both picks the stronger one the proxy offers
  const both = await through(
    squid.port,
    agentAuth({ username: 'agent', password: 'right-password' }, ['digest', 'ntlm']),
    echo,
  );
  t.ok(both.tun.ok);
  t.equal(both.tun.auth?.used, 'NTLM', 'NTLM before Digest');
});
