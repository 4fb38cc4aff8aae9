/**
 * The MQTT exchange kinds over real sockets: the `mqtt` library as the agent, aedes as the lab
 * broker, real proxies in between.
 *  - `mqtt-ws` (FlexxAgent → Azure IoT Hub): WebSocket upgrade with the `mqtt` subprotocol inside
 *    the verified TLS tunnel, IoT Hub identity, telemetry routed back as cloud-to-device messages.
 *  - `mqtt` (ESET push): MQTT over TLS on 8883, failing over to 443.
 * Fixture scenarios: fixtures/scenarios-mqtt.
 */
import { randomBytes } from 'node:crypto';
import tls from 'node:tls';
import { MqttClient } from 'mqtt';
import t from 'tap';
import WebSocket, { createWebSocketStream } from 'ws';
import type { CheckResult } from '../harness/model.ts';
import { ChainProxy } from '../harness/proxies/chain.ts';
import { SquidProxy } from '../harness/proxies/squid/squid.ts';
import { runMatrix } from '../harness/runner/run.ts';
import { loadScenarios } from '../harness/scenarios.ts';
import { resultsPerProxy } from './helpers/counts.ts';
import { testLab } from './helpers/fixtures.ts';
import { labNet } from './helpers/lab-net.ts';
import { requireComponent, squidProblem } from './helpers/requirements.ts';
import { TlsCuttingProxy } from './helpers/tls-cutting-proxy.ts';

const dir = new URL('../fixtures/scenarios-mqtt/', import.meta.url).pathname;
const scenarios = loadScenarios({ dir });
const PROFILES = ['iothub', 'iothub-open', 'push'];
const IOT = 'iothublab01.proxycheck.test:443';
const IOT_OPEN = 'iothub-open.proxycheck.test:443';
const PUSH = 'push.proxycheck.test:8883';
const PUSH_FO = 'push.proxycheck.test:443';

function finder(results: CheckResult[]) {
  return (proxy: string, endpoint: string, check: string): CheckResult => {
    const r = results.find((x) => x.proxy === proxy && x.endpoint === endpoint && x.check === check);
    if (!r) throw new Error(`no result ${proxy} ${endpoint} ${check}`);
    return r;
  };
}

type Step = { sentSha256: string; receivedSha256?: string; bytes: number; receivedBytes?: number };

t.test('chain-plain: both kinds complete; chain-mitm: pinned and untrusted agents refuse', async (t) => {
  const report = await runMatrix({
    proxies: ['chain-plain', 'chain-mitm'],
    profiles: PROFILES,
    scenarios,
    labNet: await labNet(t),
  });
  const get = finder(report.results);
  const plain = report.results.filter((r) => r.proxy === 'chain-plain');
  t.equal(
    plain.length,
    resultsPerProxy(scenarios, PROFILES),
    'every check the mqtt-ws and mqtt kinds list, for each exchange',
  );
  for (const r of plain) t.ok(r.matched, `${r.endpoint} ${r.check}: ${r.outcome} (${r.message})`);

  for (const ep of [IOT, IOT_OPEN]) {
    const proto = get('chain-plain', ep, 'protocol');
    t.equal(proto.outcome, 'pass');
    t.match(proto.evidence, {
      upgrade: { status: 101, subprotocol: 'mqtt', headers: { 'sec-websocket-protocol': 'mqtt' } },
      connack: { returnCode: 0 },
      suback: { granted: [1] },
      username: new RegExp(`^${ep.split(':')[0]}/flexxagent-[0-9a-f]+/\\?api-version=2021-04-12$`),
    });
    const payload = get('chain-plain', ep, 'payload');
    t.equal(payload.outcome, 'pass');
    const steps = payload.evidence.steps as Step[];
    t.equal(steps.length, 5);
    for (const s of steps) {
      t.equal(s.bytes, 512);
      t.equal(s.receivedSha256, s.sentSha256, 'telemetry came back as C2D byte-identical');
    }
    t.match(steps[0], { receivedTopic: /^devices\/flexxagent-[0-9a-f]+\/messages\/devicebound\// });
  }

  t.equal(get('chain-plain', PUSH, 'connect').outcome, 'pass');
  const fo = get('chain-plain', PUSH_FO, 'failover');
  t.equal(fo.outcome, 'skip', 'no failover needed when 8883 works');
  t.equal(fo.expected, 'skip');
  t.match(fo.message, /8883 worked \(CONNACK return code 0/);
  t.match(get('chain-plain', PUSH, 'protocol').evidence, { connack: { returnCode: 0 }, port: 8883 });
  const pushSteps = get('chain-plain', PUSH, 'payload').evidence.steps as Step[];
  t.equal(pushSteps.length, 3);
  for (const s of pushSteps) t.equal(s.receivedSha256, s.sentSha256);

  // chain-mitm, corporate CA not deployed
  t.equal(get('chain-mitm', IOT, 'tls-interception').outcome, 'fail', 'must-not-inspect host re-signed');
  t.equal(get('chain-mitm', IOT, 'pinning').outcome, 'fail');
  for (const c of ['protocol', 'payload']) {
    t.equal(get('chain-mitm', IOT, c).outcome, 'dependency_fail', `pinned IoT agent: ${c} not run`);
  }
  t.equal(get('chain-mitm', IOT_OPEN, 'tls-interception').outcome, 'warn');
  t.equal(get('chain-mitm', IOT_OPEN, 'protocol').outcome, 'dependency_fail', 'untrusted CA refused');
  // behind the 200 chain-mitm completes TLS itself and speaks HTTP: the MQTT broker never answers
  t.equal(get('chain-mitm', PUSH, 'connect').outcome, 'warn');
  const mitmFo = get('chain-mitm', PUSH_FO, 'failover');
  t.equal(mitmFo.outcome, 'fail', '443 is intercepted too');
  t.match(mitmFo.message, /8883 failed \(.*refused the TLS session.*\) and the failover to 443 failed too/);
  t.equal(get('chain-mitm', PUSH_FO, 'protocol').outcome, 'dependency_fail');
});

t.test(
  'chain-mitm with the corporate CA deployed: unpinned MQTT works through the interception',
  async (t) => {
    const report = await runMatrix({
      proxies: ['chain-mitm'],
      profiles: PROFILES,
      scenarios,
      labNet: await labNet(t),
      trustCorporateCa: true,
    });
    const get = finder(report.results);
    t.equal(get('chain-mitm', IOT, 'tls-interception').outcome, 'fail');
    t.equal(get('chain-mitm', IOT, 'pinning').outcome, 'fail', 'the pinned agent still refuses');
    t.equal(get('chain-mitm', IOT, 'protocol').outcome, 'dependency_fail');
    t.equal(get('chain-mitm', IOT, 'payload').outcome, 'dependency_fail');

    const w = get('chain-mitm', IOT_OPEN, 'tls-interception');
    t.equal(w.outcome, 'warn');
    t.match(w.message, /re-signed by "proxycheck Corporate Inspection CA"/);
    t.equal(get('chain-mitm', IOT_OPEN, 'protocol').outcome, 'pass');
    t.equal(get('chain-mitm', IOT_OPEN, 'payload').outcome, 'pass');

    t.equal(get('chain-mitm', PUSH, 'tls-interception').outcome, 'warn', 'reported on 8883');
    t.equal(get('chain-mitm', PUSH, 'protocol').outcome, 'pass');
    t.equal(get('chain-mitm', PUSH, 'payload').outcome, 'pass');
    t.equal(get('chain-mitm', PUSH_FO, 'failover').outcome, 'skip');
  },
);

t.test(
  'squid-default: CONNECT to 8883 refused with 403, the agent fails over to 443',
  { ...requireComponent(t, 'squid', squidProblem()), timeout: 120_000 },
  async (t) => {
    const report = await runMatrix({
      proxies: [new SquidProxy({ flavour: 'default', runtime: 'process' })],
      profiles: ['iothub', 'push'],
      scenarios,
      labNet: await labNet(t),
    });
    const get = finder(report.results);
    const connect = get('squid-default', PUSH, 'connect');
    t.equal(connect.outcome, 'fail');
    t.equal(
      connect.message,
      'CONNECT push.proxycheck.test:8883 answered "HTTP/1.1 403 Forbidden", not 200 (X-Squid-Error: ERR_ACCESS_DENIED 0)',
    );
    t.match(connect.evidence, { answerHead: /X-Squid-Error: ERR_ACCESS_DENIED/ });
    const fo = get('squid-default', PUSH_FO, 'failover');
    t.equal(fo.outcome, 'pass');
    t.match(
      fo.message,
      /8883 failed \(CONNECT .*403 Forbidden.*\); failed over to 443: CONNACK return code 0.*; 3 messages/,
    );
    t.match(fo.evidence, { primary: { answerHead: /403 Forbidden/ }, failover: { connect: /200/ } });
    for (const c of ['tls-interception', 'protocol', 'payload']) {
      t.equal(get('squid-default', PUSH_FO, c).outcome, 'pass', `${c} reported for the port used (443)`);
    }
    t.notOk(
      report.results.some((r) => r.endpoint === PUSH && ['protocol', 'payload'].includes(r.check)),
      'nothing but connect is reported for 8883',
    );
    for (const c of ['connect', 'tls-interception', 'pinning', 'protocol', 'payload']) {
      t.equal(get('squid-default', IOT, c).outcome, 'pass', `IoT Hub over WebSocket through squid: ${c}`);
    }
  },
);

t.test('proxies that break the protocol make `protocol` fail', async (t) => {
  const cutting = new TlsCuttingProxy();
  // An inspecting proxy that mangles the Upgrade header (the origin refuses the WebSocket).
  const noUpgrade = new ChainProxy({
    id: 'test-mitm-no-upgrade',
    mitm: true,
    tamper: (chunk) =>
      Buffer.from(chunk.toString('latin1').replace('Upgrade: websocket', 'Upgrade: websockex'), 'latin1'),
  });
  const report = await runMatrix({
    proxies: [cutting, noUpgrade],
    profiles: ['iothub-open', 'push'],
    scenarios,
    labNet: await labNet(t),
    trustCorporateCa: true,
  });
  const get = finder(report.results);
  t.ok(cutting.cuts >= 3, `the cutting proxy cut ${cutting.cuts} tunnels`);
  for (const c of ['connect', 'tls-interception']) {
    t.equal(get('test-tls-cutting', IOT_OPEN, c).outcome, 'pass', `the handshake got through: ${c}`);
  }
  const wsCut = get('test-tls-cutting', IOT_OPEN, 'protocol');
  t.equal(wsCut.outcome, 'fail');
  t.match(wsCut.message, /WebSocket/);
  t.equal(get('test-tls-cutting', IOT_OPEN, 'payload').outcome, 'dependency_fail');

  t.equal(get('test-tls-cutting', PUSH, 'connect').outcome, 'pass');
  const fo = get('test-tls-cutting', PUSH_FO, 'failover');
  t.equal(fo.outcome, 'fail');
  t.match(fo.message, /8883 failed \(MQTT handshake failed: .*\) and the failover to 443 failed too/);
  const cut = get('test-tls-cutting', PUSH_FO, 'protocol');
  t.equal(cut.outcome, 'fail');
  t.match(cut.message, /^MQTT handshake failed: no CONNACK: connection closed|the connection was closed/);
  t.notOk(cut.evidence.connack, 'no CONNACK arrived');

  const refused = get('test-mitm-no-upgrade', IOT_OPEN, 'protocol');
  t.equal(refused.outcome, 'fail');
  t.match(
    refused.message,
    /WebSocket upgrade to wss:\/\/iothub-open\.proxycheck\.test\/\$iothub\/websocket answered 400/,
  );
  t.match(refused.evidence, { upgrade: { status: 400, requestedProtocols: ['mqtt'] } });
  t.equal(get('test-mitm-no-upgrade', IOT_OPEN, 'payload').outcome, 'dependency_fail');
  t.equal(get('test-mitm-no-upgrade', PUSH, 'payload').outcome, 'pass', 'raw MQTT has no Upgrade header');
});

t.test('lab broker: IoT Hub identity and the mqtt subprotocol are enforced', async (t) => {
  const host = 'iothub-check.proxycheck.test';
  const { lab, pki } = await testLab(t, await labNet(t), [
    { host, ports: [{ port: 443, transport: 'https' }] },
  ]);
  const address = lab.addressOf(host) ?? '';
  const open = (protocols: string[]) =>
    new Promise<WebSocket>((resolve, reject) => {
      const ws = new WebSocket(`wss://${host}/$iothub/websocket`, protocols, {
        createConnection: () =>
          tls.connect({ host: address, port: 443, servername: host, ca: pki.labRoot.cert.certPem }),
      });
      ws.once('open', () => resolve(ws));
      ws.once('error', reject);
    });

  // no `mqtt` subprotocol: the client library itself refuses a server that picks none
  await t.rejects(open(['mqttv3.1']), /Server sent no subprotocol/);

  const connack = async (username: string) => {
    const ws = await open(['mqtt']);
    const stream = createWebSocketStream(ws);
    stream.on('error', () => {});
    const id = `dev-${randomBytes(4).toString('hex')}`;
    const client = new MqttClient(() => stream, {
      clientId: id,
      username: username.replace('{id}', id),
      protocolVersion: 4,
      reconnectPeriod: 0,
      connectTimeout: 5_000,
    });
    client.on('error', () => {});
    try {
      return await new Promise<number>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('no CONNACK within 5000 ms')), 5_000);
        client.on('packetreceive', (p) => {
          if (p.cmd === 'connack') {
            clearTimeout(timer);
            resolve(p.returnCode ?? -1);
          }
        });
      });
    } finally {
      client.end(true);
      ws.terminate();
    }
  };
  t.equal(await connack(`${host}/{id}/?api-version=2021-04-12`), 0, 'IoT Hub identity accepted');
  t.equal(await connack('someone-else'), 4, 'wrong username: CONNACK 4 (bad user name or password)');
});
