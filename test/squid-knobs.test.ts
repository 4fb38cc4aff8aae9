/**
 * The squid engine honours a policy's knobs, over real sockets against squid as a process:
 * CONNECT port lists and `any`, inspection `only` (one host re-signed by the inspection CA, named
 * by caSubject; another host's own certificate), idleTimeoutSeconds (a silent plain tunnel and a
 * silent bumped connection are closed by squid after ~N s; traffic every 250 ms keeps both open
 * well past 2N) and the Via / X-Forwarded-For headers of a forwarded request.
 */
import http from 'node:http';
import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import t from 'tap';
import { startTls } from '../harness/agent/tls.ts';
import { openTunnel } from '../harness/agent/tunnel.ts';
import type { EchoReply } from '../harness/lab/lab.ts';
import type { SquidPolicy } from '../harness/proxies/squid/config.ts';
import { SquidProxy } from '../harness/proxies/squid/squid.ts';
import type { StartedProxy } from '../harness/proxies/types.ts';
import { startProxy, testLab } from './helpers/fixtures.ts';
import { labNet } from './helpers/lab-net.ts';
import { requireComponent, squidProblem } from './helpers/requirements.ts';

const opts = requireComponent(t, 'squid', squidProblem());

const STREAMS = 'streams.proxycheck.test'; // raw echo on 8883 and 13000
const INSPECTED = 'inspected.proxycheck.test';
const SPLICED = 'spliced.proxycheck.test';
const WEB = 'web.proxycheck.test'; // plain http on 80
const CA_SUBJECT = 'CN=Test Inspection Root, O=Test Corp';
const IDLE = 3;

const none = { mode: 'none' as const, hosts: [] };

/** Seconds from `t0` until the socket closes (or ends), or Infinity when it is still open after `holdS`. */
function closedWithin(s: Socket, t0: number, holdS: number): Promise<number> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      resolve((performance.now() - t0) / 1000);
    };
    const timer = setTimeout(() => {
      for (const e of ['close', 'end', 'error']) s.off(e, done);
      resolve(Number.POSITIVE_INFINITY);
    }, holdS * 1000);
    for (const e of ['close', 'end', 'error']) s.once(e, done);
  });
}

/** One GET over a bumped TLS session; resolves when the echo reply's JSON is complete. */
function get(s: TLSSocket, host: string): Promise<void> {
  return new Promise((resolve, reject) => {
    let buf = '';
    const onData = (d: Buffer) => {
      buf += d.toString();
      const head = buf.indexOf('\r\n\r\n');
      const length = Number(/content-length: (\d+)/i.exec(buf)?.[1] ?? Number.NaN);
      if (head >= 0 && buf.length - head - 4 >= length) {
        s.off('data', onData);
        s.off('close', onClose);
        resolve();
      }
    };
    const onClose = () => reject(new Error('closed during a request'));
    s.on('data', onData);
    s.once('close', onClose);
    s.write(`GET /echo HTTP/1.1\r\nHost: ${host}\r\n\r\n`);
  });
}

/** Keeps `tick` going every 250 ms until stopped or the socket closes. */
function every250ms(s: Socket, tick: () => Promise<void> | void): () => void {
  let stopped = false;
  void (async () => {
    while (!stopped && !s.destroyed) {
      await new Promise((r) => setTimeout(r, 250));
      if (!stopped && !s.destroyed) await Promise.resolve(tick()).catch(() => {});
    }
  })();
  return () => {
    stopped = true;
  };
}

async function plainTunnel(p: StartedProxy, port: number): Promise<Socket> {
  const tun = await openTunnel({ proxy: p, target: { host: STREAMS, port } });
  if (!tun.ok) throw new Error(`CONNECT ${STREAMS}:${port} through ${p.id}: ${tun.answer?.statusLine}`);
  tun.socket.resume();
  return tun.socket;
}

async function bumpedSession(p: StartedProxy, ca: string[]): Promise<TLSSocket> {
  const tun = await openTunnel({ proxy: p, target: { host: INSPECTED, port: 443 } });
  if (!tun.ok) throw new Error(`CONNECT ${INSPECTED}:443 through ${p.id}: ${tun.answer?.statusLine}`);
  const s = await startTls(tun.socket, { servername: INSPECTED, ca });
  if (!s.socket) throw new Error(`TLS to ${INSPECTED}: ${s.refused ?? s.error}`);
  await get(s.socket, INSPECTED);
  return s.socket;
}

/** A plain-HTTP GET through the proxy to the lab's http origin: the request head the origin saw. */
function forwardedHead(p: StartedProxy): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: p.host, port: p.port, method: 'GET', path: `http://${WEB}/echo`, headers: { host: WEB } },
      (res) => {
        let body = '';
        res.on('data', (d: Buffer) => {
          body += d.toString();
        });
        res.on('end', () => {
          if (res.statusCode !== 200) return reject(new Error(`${p.id}: GET answered ${res.statusCode}`));
          const reply = JSON.parse(body) as EchoReply;
          resolve(Buffer.from(reply.rawHead, 'base64').toString('latin1'));
        });
      },
    );
    req.on('error', reject);
    req.end();
  });
}

t.test('squid honours the policy knobs', { ...opts, timeout: 60_000 }, async (t) => {
  const net = await labNet(t);
  const { lab, runDir, pki } = await testLab(t, net, [
    {
      host: STREAMS,
      ports: [
        { port: 8883, transport: 'tcp' },
        { port: 13000, transport: 'tcp' },
      ],
    },
    { host: INSPECTED, ports: [{ port: 443, transport: 'https' }] },
    { host: SPLICED, ports: [{ port: 443, transport: 'https' }] },
    { host: WEB, ports: [{ port: 80, transport: 'http' }] },
  ]);
  const squid = (id: string, policy: SquidPolicy, caSubject?: string) =>
    startProxy(
      t,
      new SquidProxy({ id, policy, runtime: 'process', ...(caSubject ? { caSubject } : {}) }),
      lab,
      runDir,
    );
  const [ports, any, only] = await Promise.all([
    squid('squid-ports', {
      connectPorts: [443, 8883],
      auth: 'none',
      inspection: none,
      idleTimeoutSeconds: IDLE,
      via: false,
      xForwardedFor: false,
    }),
    squid('squid-any', { connectPorts: 'any', auth: 'none', inspection: none }),
    squid(
      'squid-only',
      {
        connectPorts: 'stock',
        auth: 'none',
        inspection: { mode: 'only', hosts: [INSPECTED] },
        idleTimeoutSeconds: IDLE,
      },
      CA_SUBJECT,
    ),
  ]);
  const inspectionCa = await pki.inspectionCa(CA_SUBJECT);

  await t.test('connectPorts [443, 8883]: 8883 tunnels, 13000 is refused with 403', async (t) => {
    const ok = await openTunnel({ proxy: ports, target: { host: STREAMS, port: 8883 } });
    t.equal(ok.answer?.statusCode, 200);
    if (ok.ok) ok.socket.destroy();
    const refused = await openTunnel({ proxy: ports, target: { host: STREAMS, port: 13000 } });
    t.equal(refused.answer?.statusCode, 403);
    t.notOk(refused.ok);
  });

  await t.test("connectPorts 'any': 13000 tunnels", async (t) => {
    const tun = await openTunnel({ proxy: any, target: { host: STREAMS, port: 13000 } });
    t.equal(tun.answer?.statusCode, 200);
    if (tun.ok) tun.socket.destroy();
  });

  await t.test('inspection only: that host is re-signed by the caSubject CA, another is not', async (t) => {
    t.equal(only.kind, 'mitm');
    t.equal(only.inspectionCa, inspectionCa.cert.certPem, 'StartedProxy names the CA it signs with');
    const ca = [pki.labRoot.cert.certPem, inspectionCa.cert.certPem];
    for (const [host, issuer] of [
      [INSPECTED, 'Test Inspection Root'],
      [SPLICED, pki.labRoot.commonName],
    ] as const) {
      const tun = await openTunnel({ proxy: only, target: { host, port: 443 } });
      if (!tun.ok) {
        t.fail(`CONNECT ${host}: ${tun.answer?.statusLine}`);
        continue;
      }
      const s = await startTls(tun.socket, { servername: host, ca });
      t.ok(s.socket, `${host}: the agent trusting both CAs accepts`);
      t.equal(s.chain[0]?.issuerCN, issuer, `${host}: leaf issued by ${issuer}`);
      if (host === INSPECTED) t.match(s.chain[0]?.issuer, /O=Test Corp/);
      s.socket?.destroy();
    }
  });

  await t.test(`idleTimeoutSeconds ${IDLE}: silence is cut after ~${IDLE} s, traffic is not`, async (t) => {
    const ca = [pki.labRoot.cert.certPem, inspectionCa.cert.certPem];
    const [silentTunnel, busyTunnel, silentBumped, busyBumped] = await Promise.all([
      plainTunnel(ports, 8883),
      plainTunnel(ports, 8883),
      bumpedSession(only, ca),
      bumpedSession(only, ca),
    ]);
    const t0 = performance.now();
    const stops = [
      every250ms(busyTunnel, () => {
        busyTunnel.write('x');
      }),
      every250ms(busyBumped, () => get(busyBumped, INSPECTED)),
    ];
    const hold = 7;
    const [a, b, c, d] = await Promise.all(
      [silentTunnel, busyTunnel, silentBumped, busyBumped].map((s) => closedWithin(s, t0, hold)),
    );
    for (const stop of stops) stop();
    for (const s of [silentTunnel, busyTunnel, silentBumped, busyBumped]) s.destroy();
    t.comment(
      `silent tunnel closed after ${a?.toFixed(2)} s, silent bumped connection after ${c?.toFixed(2)} s`,
    );
    t.ok(
      a !== undefined && a >= IDLE - 1.1 && a <= IDLE + 0.6,
      `silent plain tunnel closed by squid after ${a?.toFixed(2)} s`,
    );
    t.equal(b, Number.POSITIVE_INFINITY, `a tunnel with traffic every 250 ms is open after ${hold} s`);
    t.ok(
      c !== undefined && c >= IDLE - 1.1 && c <= IDLE + 0.6,
      `silent bumped connection closed by squid after ${c?.toFixed(2)} s`,
    );
    t.equal(
      d,
      Number.POSITIVE_INFINITY,
      `a bumped connection with a request every 250 ms is open after ${hold} s`,
    );
  });

  await t.test(
    'via / xForwardedFor false: a forwarded request has neither; defaults have both',
    async (t) => {
      const stripped = await forwardedHead(ports);
      t.notMatch(stripped, /^via:/im, 'via false: no Via');
      t.notMatch(stripped, /^x-forwarded-for:/im, 'xForwardedFor false: no X-Forwarded-For');
      const full = await forwardedHead(any);
      t.match(full, /^via: 1\.1 proxycheck-squid/im, 'default: Via');
      t.match(full, /^x-forwarded-for: 127\.0\.0\.1/im, 'default: X-Forwarded-For');
    },
  );
});
