/**
 * The `amqp-ws` kind over real sockets: rhea on both ends (agent: rhea over a ws WebSocket with
 * AMQPWSB10 on the verified TLS socket; lab: a rhea container behind `/$servicebus/websocket`
 * echoing messages). chain-plain and squid-default carry it; chain-mitm breaks it for the
 * must-not-inspect Service Bus host and carries it (warned) for an inspectable one; an
 * inspecting proxy that drops the hop-by-hop Upgrade/Connection headers, and one that cuts the
 * stream after the agent's first AMQP bytes, fail `protocol` with what each side saw.
 */
import t, { type Test } from 'tap';
import type { CheckResult } from '../harness/model.ts';
import { ChainProxy, type PlaintextTamper } from '../harness/proxies/chain.ts';
import { SquidProxy } from '../harness/proxies/squid/squid.ts';
import type { ProxyUnderTest } from '../harness/proxies/types.ts';
import { runMatrix } from '../harness/runner/run.ts';
import { loadScenarios } from '../harness/scenarios.ts';
import { labNet } from './helpers/lab-net.ts';
import { requireComponent, squidProblem } from './helpers/requirements.ts';

const squid = requireComponent(t, 'squid', squidProblem());
const scenarios = loadScenarios({ dir: new URL('../fixtures/scenarios-ws/', import.meta.url).pathname });
const SB = 'flxsbnamelab01.servicebus.proxycheck.test:443';
const SB_OPEN = 'sb-open.proxycheck.test:443';

async function run(
  proxies: ProxyUnderTest[],
  profiles: string[],
  net: number,
  extra: { trustCorporateCa?: boolean; answerMs?: number } = {},
) {
  const report = await runMatrix({
    proxies,
    profiles,
    scenarios,
    labNet: net,
    trustCorporateCa: extra.trustCorporateCa ?? false,
    ...(extra.answerMs ? { timeouts: { answerMs: extra.answerMs } } : {}),
  });
  return (proxy: string, endpoint: string, check: string): CheckResult | undefined =>
    report.results.find((r) => r.proxy === proxy && r.endpoint === endpoint && r.check === check);
}

function protocolPasses(t: Test, r: CheckResult | undefined): void {
  t.equal(r?.outcome, 'pass', r?.message ?? '');
  t.equal(
    r?.message,
    '"HTTP/1.1 101 Switching Protocols" with AMQPWSB10; SASL header AMQP\\x03\\x01\\x00\\x00 and AMQP header AMQP\\x00\\x01\\x00\\x00 both ways; open and attach completed',
  );
  const ev = r?.evidence as {
    acceptedSubprotocol: string;
    agentSent: { firstBytes: string; frames: string[] };
    agentReceived: { firstBytes: string; frames: string[] };
  };
  t.equal(ev.acceptedSubprotocol, 'AMQPWSB10');
  t.ok(
    ev.agentSent.firstBytes.startsWith('AMQP\\x03\\x01\\x00\\x00'),
    'the agent spoke the SASL header first',
  );
  t.ok(ev.agentReceived.firstBytes.startsWith('AMQP\\x03\\x01\\x00\\x00'), 'the broker answered with it');
  t.match(ev.agentSent.frames, ['header SASL 1.0.0', 'sasl-init', 'header AMQP 1.0.0', 'open (channel 0)']);
  t.match(ev.agentReceived.frames, [
    'header SASL 1.0.0',
    'sasl-mechanisms',
    'sasl-outcome',
    'header AMQP 1.0.0',
    'open (channel 0)',
  ]);
  t.ok(ev.agentReceived.frames.filter((f) => f.startsWith('attach')).length === 2, 'both links attached');
}

function payloadPasses(t: Test, r: CheckResult | undefined): void {
  t.equal(r?.outcome, 'pass', r?.message ?? '');
  const steps = r?.evidence.steps as Array<Record<string, unknown>>;
  t.equal(steps.length, 5);
  for (const s of steps) {
    t.equal(s.brokerReceivedSha256, s.sentSha256, `message ${s.message} up`);
    t.equal(s.receivedSha256, s.sentSha256, `message ${s.message} back`);
    t.equal(s.receivedBytes, 1024);
  }
}

t.test('chain-plain carries AMQP over WebSocket; chain-mitm only where inspection is allowed', async (t) => {
  const get = await run(
    [new ChainProxy(), new ChainProxy({ mitm: true })],
    ['servicebus', 'servicebus-open'],
    await labNet(t),
    {
      trustCorporateCa: true,
    },
  );
  for (const c of ['connect', 'tls-interception', 'pinning'])
    t.equal(get('chain-plain', SB, c)?.outcome, 'pass', `chain-plain ${c}`);
  protocolPasses(t, get('chain-plain', SB, 'protocol'));
  payloadPasses(t, get('chain-plain', SB, 'payload'));

  t.equal(get('chain-mitm', SB, 'tls-interception')?.outcome, 'fail');
  t.equal(get('chain-mitm', SB, 'pinning')?.outcome, 'fail');
  for (const c of ['protocol', 'payload']) {
    t.equal(get('chain-mitm', SB, c)?.outcome, 'dependency_fail');
    t.match(get('chain-mitm', SB, c)?.message, /refused the TLS session/);
  }
  t.equal(get('chain-mitm', SB_OPEN, 'tls-interception')?.outcome, 'warn');
  protocolPasses(t, get('chain-mitm', SB_OPEN, 'protocol'));
  payloadPasses(t, get('chain-mitm', SB_OPEN, 'payload'));
});

t.test('squid-default (process) carries AMQP over WebSocket on 443', squid, async (t) => {
  const get = await run(
    [new SquidProxy({ flavour: 'default', runtime: 'process' })],
    ['servicebus'],
    await labNet(t),
  );
  for (const c of ['connect', 'tls-interception', 'pinning'])
    t.equal(get('squid-default', SB, c)?.outcome, 'pass', `${c}: ${get('squid-default', SB, c)?.message}`);
  protocolPasses(t, get('squid-default', SB, 'protocol'));
  payloadPasses(t, get('squid-default', SB, 'payload'));
});

/** Drops the hop-by-hop Upgrade and Connection headers of the agent's request, as a naive inspecting proxy does. */
const stripUpgrade: PlaintextTamper = (chunk) =>
  Buffer.from(chunk.toString('latin1').replace(/\r\n(Upgrade|Connection): [^\r]*/gi, ''), 'latin1');

/**
 * Lets the upgrade request and the agent's first WebSocket frame (its SASL protocol header) through,
 * then drops every later byte the agent sends.
 */
function cutAfterFirstFrame(): PlaintextTamper {
  let head = Buffer.alloc(0);
  let passUntil = Number.POSITIVE_INFINITY;
  return (chunk, offset) => {
    if (passUntil === Number.POSITIVE_INFINITY) {
      head = Buffer.concat([head, chunk]);
      const end = head.indexOf('\r\n\r\n');
      if (end < 0 || head.length < end + 4 + 2) return chunk;
      const frame = head.subarray(end + 4);
      const len7 = (frame[1] ?? 0) & 0x7f;
      const masked = ((frame[1] ?? 0) & 0x80) !== 0;
      if (len7 >= 126) throw new Error('test tamper: the first frame is larger than expected');
      passUntil = end + 4 + 2 + (masked ? 4 : 0) + len7;
    }
    if (offset >= passUntil) return Buffer.alloc(0);
    return chunk.subarray(0, Math.max(0, passUntil - offset));
  };
}

t.test('proxies that break the protocol fail `protocol` with what each side saw', async (t) => {
  const get = await run(
    [
      new ChainProxy({ mitm: true, tamper: stripUpgrade, id: 'strips-upgrade' }),
      new ChainProxy({ mitm: true, tamper: cutAfterFirstFrame(), id: 'cuts-after-header' }),
    ],
    ['servicebus-open'],
    await labNet(t),
    { trustCorporateCa: true, answerMs: 1500 },
  );
  const stripped = get('strips-upgrade', SB_OPEN, 'protocol');
  t.equal(stripped?.outcome, 'fail');
  t.match(
    stripped?.message,
    /^WebSocket upgrade wss:\/\/sb-open\.proxycheck\.test\/\$servicebus\/websocket answered "HTTP\/1\.1 200 OK", not 101 Switching Protocols$/,
  );
  t.match(stripped?.evidence, { answerHead: /^HTTP\/1\.1 200 OK\r\n/, offeredSubprotocols: ['AMQPWSB10'] });
  t.equal(get('strips-upgrade', SB_OPEN, 'payload')?.outcome, 'dependency_fail');
  t.equal(get('strips-upgrade', SB_OPEN, 'connect')?.outcome, 'pass', 'the CONNECT itself was fine');

  const cut = get('cuts-after-header', SB_OPEN, 'protocol');
  t.equal(cut?.outcome, 'fail');
  t.match(
    cut?.message,
    /^AMQP over WebSocket did not complete: AMQP open: no open from the broker within 1500 ms \(timeouts\.answerMs\); the agent sent header SASL 1\.0\.0, sasl-init and received header SASL 1\.0\.0, sasl-mechanisms$/,
  );
  const ev = cut?.evidence as { agentReceived: { frames: string[] }; problems: string[] };
  t.same(
    ev.agentReceived.frames,
    ['header SASL 1.0.0', 'sasl-mechanisms'],
    'the broker saw the header, nothing after',
  );
  t.same(ev.problems, [
    'no header AMQP 1.0.0 from the agent',
    'no header AMQP 1.0.0 from the broker',
    'the broker never answered open',
  ]);
  t.equal(get('cuts-after-header', SB_OPEN, 'payload')?.outcome, 'dependency_fail');
});
