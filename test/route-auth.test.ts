/**
 * Proxy authentication on the route layer (harness/route/auth.ts, the CONNECT client in
 * harness/agent/tunnel.ts): a strategy answers the proxy's 407 round by round on one kept-alive
 * connection, as connection-bound schemes (NTLM, Negotiate) need; a proxy that closes between
 * rounds breaks the dance and the 407 stands; Basic is one preemptive round; every
 * Proxy-Authorization value is redacted in evidence.
 */
import net, { type Socket } from 'node:net';
import t, { type Test } from 'tap';
import { openTunnel } from '../harness/agent/tunnel.ts';
import {
  basicAuth,
  type ProxyAuth,
  redactAuthorization,
  redactChallengeHead,
} from '../harness/route/auth.ts';
import { parseConnect, readHead, startRawProxy } from './helpers/raw-proxy.ts';

/** A byte echo standing in for the origin. */
async function echoServer(t: Test): Promise<number> {
  const server = net.createServer((s) => s.pipe(s));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  return (server.address() as net.AddressInfo).port;
}

/**
 * A proxy that wants two rounds of a made-up connection-bound scheme: `Token` → 407 with a
 * challenge, `Token <challenge>-signed` → 200. With `closeBetween` it closes after its 407.
 */
async function twoRoundProxy(t: Test, upstreamPort: number, closeBetween = false) {
  const seen = { connections: 0, heads: [] as string[] };
  const p = await startRawProxy('two-round', (client, raw) => {
    seen.connections++;
    const challenge = `c${seen.connections}`;
    const onHead = (head: string) => {
      seen.heads.push(head);
      if (!parseConnect(head)) return client.end('HTTP/1.1 400 Bad Request\r\n\r\n');
      const auth = /^Proxy-Authorization: Token (\S+)$/im.exec(head)?.[1];
      if (auth === `${challenge}-signed`) {
        const upstream = raw.dial('127.0.0.1', upstreamPort, () => {
          client.write('HTTP/1.1 200 Connection established\r\n\r\n');
          client.pipe(upstream).pipe(client);
          client.resume();
        });
        return upstream;
      }
      const body = 'who?\n';
      client.write(
        `HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm="x"\r\nProxy-Authenticate: Token ${auth ? 'failed' : challenge}\r\nContent-Length: ${body.length}\r\n${closeBetween ? 'Connection: close\r\n' : ''}\r\n${body}`,
      );
      if (closeBetween) client.end();
      else {
        readHead(client, onHead);
        client.resume();
      }
    };
    readHead(client, onHead);
  });
  t.teardown(() => p.stop());
  return { p, seen };
}

/** A strategy for the made-up scheme: nothing preemptive, one answer to a `Token` challenge. */
const tokenAuth: ProxyAuth = {
  scheme: 'Token',
  start: () => ({
    preemptive: () => undefined,
    answer(challenges) {
      const c = challenges.map((x) => /^Token (c\d+)$/.exec(x)?.[1]).find(Boolean);
      return c ? `Token ${c}-signed` : undefined;
    },
  }),
};

t.test('a two-round scheme completes on one kept-alive connection', async (t) => {
  const { p, seen } = await twoRoundProxy(t, await echoServer(t));
  const tun = await openTunnel({
    proxy: { host: p.host, port: p.port, auth: tokenAuth },
    target: { host: 'origin.test', port: 443 },
  });
  t.ok(tun.ok, 'the tunnel opened after the second round');
  t.equal(seen.connections, 1, 'both rounds on the same connection');
  t.equal(seen.heads.length, 2);
  t.notMatch(seen.heads[0] ?? '', /Proxy-Authorization/, 'nothing preemptive for this scheme');
  t.same(tun.authRounds, [
    {
      round: 1,
      statusLine: 'HTTP/1.1 407 Proxy Authentication Required',
      challenges: ['Basic realm="x"', 'Token c1'],
      answeredWith: 'Token',
    },
  ]);
  t.match(tun.requestHead, /Proxy-Authorization: Token <redacted>/, 'the answer is redacted in evidence');
  t.notMatch(tun.requestHead, /c1-signed/);
  if (!tun.ok) return;
  const socket: Socket = tun.socket;
  t.teardown(() => socket.destroy());
  socket.resume();
  const echoed = await new Promise<string>((resolve) => {
    socket.once('data', (d) => resolve(d.toString()));
    socket.write('ping');
  });
  t.equal(echoed, 'ping', 'the tunnel carries bytes after the dance (the 407 body was skipped)');
});

t.test('a proxy that closes the connection between rounds breaks the dance: the 407 stands', async (t) => {
  const { p, seen } = await twoRoundProxy(t, await echoServer(t), true);
  const tun = await openTunnel({
    proxy: { host: p.host, port: p.port, auth: tokenAuth },
    target: { host: 'origin.test', port: 443 },
  });
  t.notOk(tun.ok);
  t.equal(tun.answer?.statusCode, 407);
  t.equal(seen.connections, 1, 'the agent does not start over on a new connection');
  t.notOk(tun.authRounds, 'no round was answered');
});

t.test('a rejected answer ends the dance with the 407; Basic is one preemptive round', async (t) => {
  const wrong: ProxyAuth = {
    scheme: 'Token',
    start: () => ({
      preemptive: () => undefined,
      answer: (_challenges, round) => (round === 1 ? 'Token wrong' : undefined),
    }),
  };
  const { p } = await twoRoundProxy(t, await echoServer(t));
  const tun = await openTunnel({
    proxy: { host: p.host, port: p.port, auth: wrong },
    target: { host: 'o.test', port: 443 },
  });
  t.notOk(tun.ok);
  t.equal(tun.answer?.statusCode, 407);
  t.equal(tun.authRounds?.length, 1);
  const basic = basicAuth({ username: 'agent', password: 's3cret' }).start({
    method: 'CONNECT',
    uri: 'o.test:443',
    proxyHost: 'p',
  });
  t.equal(basic.preemptive(), `Basic ${Buffer.from('agent:s3cret').toString('base64')}`);
  t.equal(basic.answer(['Basic realm="x"'], 1), undefined, 'a 407 after Basic credentials is final');
});

t.test('redaction hides every Proxy-Authorization value and keeps the scheme', async (t) => {
  const head =
    'CONNECT a:443 HTTP/1.1\r\nProxy-Authorization: Basic YWdlbnQ6czNjcmV0\r\nproxy-authorization: Negotiate YIIabc\r\n\r\n';
  const red = redactAuthorization(head);
  t.notMatch(red, /YWdlbnQ6czNjcmV0|YIIabc/);
  t.match(red, /Proxy-Authorization: Basic <redacted>/);
  t.match(red, /proxy-authorization: Negotiate <redacted>/);
  const answer = redactChallengeHead(
    'HTTP/1.1 407 No\r\nProxy-Authenticate: NTLM TlRMTVNTUAACAAAA\r\nProxy-Authenticate: Digest realm="p", nonce="n0nce", qop="auth"\r\n\r\n',
  );
  t.notMatch(answer, /TlRMTVNTUAACAAAA|n0nce/, "the proxy's challenge tokens and nonces too");
  t.match(
    answer,
    /Proxy-Authenticate: NTLM <redacted>\r\nProxy-Authenticate: Digest realm="p", nonce=<redacted>, qop="auth"\r\n/,
  );
});
