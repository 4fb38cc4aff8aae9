/**
 * The `cira` kind (Intel vPro/AMT CIRA through a proxy) over real sockets: a strict CONNECT, mutual
 * TLS with the device certificate that the lab origin verifies, APF inside, and keep-alives for
 * the whole session. chain-plain carries it all; chain-mitm cannot carry the device certificate
 * (whether or not the agent trusts the corporate CA); squid-default allows 443 and refuses the
 * Open AMT MPS port 4433; sloppy test proxies fail connect-response for each flaw, and a proxy
 * whose idle timeout is shorter than the agent's real keep-alive interval fails tunnel-keepalive,
 * measured in real time (the compressed replay alone never shows it).
 * Lab nets from test/helpers/lab-net.ts.
 */
import { existsSync } from 'node:fs';
import tls from 'node:tls';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { CORPORATE_CA_CN } from '../harness/lab/pki.ts';
import { type ApfMessage, decodeApf, encodeApf } from '../harness/lab/services/apf-codec.ts';
import type { CheckResult, RunReport } from '../harness/model.ts';
import { ChainProxy } from '../harness/proxies/chain.ts';
import { SquidProxy } from '../harness/proxies/squid/squid.ts';
import { runMatrix } from '../harness/runner/run.ts';
import { loadScenarios, SCENARIOS_DIR } from '../harness/scenarios.ts';
import { testLab } from './helpers/fixtures.ts';
import { labNet } from './helpers/lab-net.ts';
import { requireComponent, squidProblem } from './helpers/requirements.ts';
import { SloppyProxy } from './helpers/sloppy-proxy.ts';

const scenarios = loadScenarios({
  dir: fileURLToPath(new URL('../fixtures/scenarios-cira/', import.meta.url)),
});
const HOST = 'iagent.flexxible.com';
const E443 = `${HOST}:443`;
const E4433 = `${HOST}:4433#open-amt-mps`;
const DEVICE_CN = `device.${HOST}`;
const CHECKS = ['connect', 'connect-response', 'tls-interception', 'mtls', 'protocol', 'tunnel-keepalive'];
/** 300 s sessions with 30 s keep-alives become 1.5 s with a keep-alive every 150 ms. */
const FAST = 0.005;

function getter(report: RunReport) {
  return (proxy: string, endpoint: string, check: string): CheckResult => {
    const r = report.results.find((x) => x.proxy === proxy && x.endpoint === endpoint && x.check === check);
    if (!r) throw new Error(`no result for ${proxy} ${endpoint} ${check}`);
    return r;
  };
}

t.test('chain-plain carries CIRA end to end; chain-mitm cannot carry the device certificate', async (t) => {
  const report = await runMatrix({
    proxies: ['chain-plain', 'chain-mitm'],
    profiles: ['cira-both'],
    scenarios,
    labNet: await labNet(t),
    timeScale: FAST,
    timerWait: 2,
  });
  const get = getter(report);
  for (const endpoint of [E443, E4433]) {
    t.same(
      report.results.filter((r) => r.proxy === 'chain-plain' && r.endpoint === endpoint).map((r) => r.check),
      CHECKS,
      `checks in report order on ${endpoint}`,
    );
    for (const check of CHECKS.filter((c) => c !== 'tunnel-keepalive')) {
      const r = get('chain-plain', endpoint, check);
      t.equal(r.outcome, 'pass', `chain-plain ${endpoint} ${check}: ${r.message}`);
    }
    const mtls = get('chain-plain', endpoint, 'mtls');
    t.equal(mtls.evidence.originVerifiedCN, DEVICE_CN, 'the origin reports the device CN it verified');
    t.match(mtls.message, DEVICE_CN);
    // the replayed session held, but 2 s of real time cannot tell a 30 s silence or a 300 s session
    const ka = get('chain-plain', endpoint, 'tunnel-keepalive');
    t.equal(ka.outcome, 'skip', ka.message);
    t.equal(ka.expected, 'skip');
    t.match(ka.evidence, {
      requiredMs: 1500,
      intervalMs: 150,
      closedBy: 'agent',
      timers: { agentGapSeconds: 30 },
    });
    const k = ka.evidence.keepalives as { sent: number; answered: number };
    t.ok(k.sent >= 9 && k.answered === k.sent, `every keep-alive answered (${k.answered}/${k.sent})`);
    t.ok(Number(ka.evidence.lastedMs) >= 1500, `tunnel lasted ${ka.evidence.lastedMs} ms`);
    t.match(get('chain-plain', endpoint, 'protocol').message, /tcpip-forward 16993 accepted/);

    // chain-mitm, the agent not trusting the corporate CA: it refuses the re-signed certificate;
    // behind the 200, chain-mitm completes TLS itself and never gets an answer from the mTLS origin
    const mc = get('chain-mitm', endpoint, 'connect');
    t.equal(mc.outcome, 'warn', mc.message);
    t.match(mc.message, /could not be confirmed: the proxy completed TLS itself/);
    t.equal(
      get('chain-mitm', endpoint, 'connect-response').outcome,
      'pass',
      'proxy-chain answers a bare 200',
    );
    const ti = get('chain-mitm', endpoint, 'tls-interception');
    t.equal(ti.outcome, 'fail');
    t.match(ti.message, CORPORATE_CA_CN);
    const m = get('chain-mitm', endpoint, 'mtls');
    t.equal(m.outcome, 'fail');
    t.match(m.message, `re-signed by "${CORPORATE_CA_CN}"`);
    t.match(m.message, /intercepting proxy terminates TLS and cannot carry the device certificate/);
    t.equal(m.evidence.interceptedBy, CORPORATE_CA_CN);
    t.match(m.remediation, /splice/);
    t.equal(get('chain-mitm', endpoint, 'protocol').outcome, 'dependency_fail');
    t.equal(get('chain-mitm', endpoint, 'tunnel-keepalive').outcome, 'dependency_fail');
  }
});

t.test(
  'chain-mitm with the corporate CA trusted: the origin refuses the proxy, the session dies',
  async (t) => {
    const report = await runMatrix({
      proxies: ['chain-mitm'],
      profiles: ['cira-443'],
      scenarios,
      labNet: await labNet(t),
      timeScale: FAST,
      trustCorporateCa: true,
      timeouts: { answerMs: 5_000 },
    });
    const get = getter(report);
    t.equal(
      get('chain-mitm', E443, 'tls-interception').outcome,
      'fail',
      'still inspected against the vendor rule',
    );
    const m = get('chain-mitm', E443, 'mtls');
    t.equal(m.outcome, 'fail');
    t.match(m.message, `re-signed by "${CORPORATE_CA_CN}"`);
    t.match(m.message, /cannot carry the device certificate/);
    t.match(m.message, /the session died before the origin answered/);
    t.equal(m.evidence.interceptedBy, CORPORATE_CA_CN);
    t.match(m.evidence.sessionError, /APF PROTOCOLVERSION reply: the connection closed/);
    t.notOk(m.evidence.originVerifiedCN, 'the origin verified nothing');
    const p = get('chain-mitm', E443, 'protocol');
    t.equal(p.outcome, 'fail');
    t.match(p.message, /APF session setup broke/);
    t.equal(get('chain-mitm', E443, 'tunnel-keepalive').outcome, 'dependency_fail');
  },
);

t.test(
  'squid-default: CIRA on 443 passes, the Open AMT MPS port 4433 is refused with 403',
  { ...requireComponent(t, 'squid', squidProblem()), timeout: 120_000 },
  async (t) => {
    const report = await runMatrix({
      proxies: [new SquidProxy({ flavour: 'default', runtime: 'process' })],
      profiles: ['cira-both', 'cira-short'],
      scenarios,
      labNet: await labNet(t),
      timeScale: FAST,
      timerWait: 4,
    });
    const get = getter(report);
    for (const check of CHECKS.filter((c) => c !== 'tunnel-keepalive')) {
      const r = get('squid-default', E443, check);
      t.equal(r.outcome, 'pass', `443 ${check}: ${r.message}`);
    }
    // squid's default timers outlast an agent that needs 1 s of silence and a 3 s session, measured
    // in real time; for the 30 s gap and the 300 s session, 4 s of waiting cannot tell
    const short = report.results.find((r) => r.profile === 'cira-short' && r.check === 'tunnel-keepalive');
    t.equal(short?.outcome, 'pass', short?.message ?? 'no result');
    t.match(short?.message, /outlasted [34](\.\d)? s of silence \(the agent is silent up to 1 s\)/);
    t.equal(get('squid-default', E443, 'tunnel-keepalive').outcome, 'skip');
    t.equal(
      get('squid-default', E443, 'connect-response').evidence.answerHead,
      'HTTP/1.1 200 Connection established\r\n\r\n',
    );
    const refused = get('squid-default', E4433, 'connect');
    t.equal(refused.outcome, 'fail');
    t.equal(
      refused.message,
      `CONNECT ${HOST}:4433 answered "HTTP/1.1 403 Forbidden", not 200 (X-Squid-Error: ERR_ACCESS_DENIED 0)`,
    );
    t.match(refused.evidence, { answerHead: /X-Squid-Error: ERR_ACCESS_DENIED/ });
    for (const check of CHECKS.slice(1)) {
      const r = get('squid-default', E4433, check);
      t.equal(r.outcome, 'dependency_fail', `4433 ${check} not run`);
      t.equal(r.evidence.dependsOn, 'connect');
    }
  },
);

t.test('sloppy CONNECT answers fail connect-response, each flaw quoted', async (t) => {
  const proxies = [
    new SloppyProxy({ id: 'sloppy-http10', httpVersion: '1.0' }),
    new SloppyProxy({ id: 'sloppy-header', headers: ['Proxy-Agent: x'] }),
    new SloppyProxy({ id: 'sloppy-body', body: 'hello' }),
    new SloppyProxy({ id: 'sloppy-glue', glue: 'SSH-2.0-x\r\n' }),
    new ChainProxy({ id: 'clean' }),
  ];
  const report = await runMatrix({
    proxies,
    profiles: ['cira-443'],
    scenarios,
    labNet: await labNet(t),
    timeScale: FAST,
    timeouts: { tlsMs: 3_000 },
  });
  const get = getter(report);
  const cr = (id: string) => get(id, E443, 'connect-response');
  for (const id of ['sloppy-http10', 'sloppy-header', 'sloppy-body', 'sloppy-glue'])
    t.equal(get(id, E443, 'connect').outcome, 'pass', `${id}: a 2xx answer opens the tunnel`);

  t.equal(cr('sloppy-http10').outcome, 'fail');
  t.match(cr('sloppy-http10').message, 'answered HTTP/1.0, not HTTP/1.1');
  t.equal(cr('sloppy-http10').evidence.answerHead, 'HTTP/1.0 200 Connection established\r\n\r\n');

  t.equal(cr('sloppy-header').outcome, 'fail');
  t.match(cr('sloppy-header').message, '1 header line(s) after the status line: Proxy-Agent: x');
  t.match(cr('sloppy-header').evidence.answerHead, 'Proxy-Agent: x\r\n');

  t.equal(cr('sloppy-body').outcome, 'fail');
  t.match(cr('sloppy-body').message, 'announces a body (Content-Length: 5)');
  t.match(cr('sloppy-body').message, '5 byte(s) glued to the answer before the client spoke: "hello"');
  t.equal(cr('sloppy-body').evidence.gluedBytes, 5);

  t.equal(cr('sloppy-glue').outcome, 'fail');
  t.match(
    cr('sloppy-glue').message,
    '11 byte(s) glued to the answer before the client spoke: "SSH-2.0-x\\r\\n"',
  );
  t.notMatch(cr('sloppy-glue').message, /header line/);

  // The firmware tolerates nothing but a clean answer: it drops the connection on any flaw.
  for (const id of ['sloppy-http10', 'sloppy-header', 'sloppy-body', 'sloppy-glue']) {
    for (const check of ['tls-interception', 'mtls', 'protocol', 'tunnel-keepalive']) {
      const r = get(id, E443, check);
      t.equal(r.outcome, 'dependency_fail', `${id} ${check} not run`);
      t.equal(r.evidence.dependsOn, 'connect-response');
    }
  }
  t.equal(cr('clean').outcome, 'pass', 'a clean answer passes');
  t.match(cr('clean').message, /^clean "HTTP\/1\.1 200/);
});

t.test(
  'idle timers are measured in real time: compressed keep-alives never hide a timer below the 30 s gap',
  async (t) => {
    // time scale 0.01: the replayed session is 3 s with a keep-alive every 300 ms; the probes wait
    // 4 s of real time, silent or busy
    const short = new SloppyProxy({ id: 'idle-400ms', idleKillMs: 400 });
    const long = new SloppyProxy({ id: 'idle-2000ms', idleKillMs: 2_000 });
    const report = await runMatrix({
      proxies: [short, long],
      profiles: ['cira-443'],
      scenarios,
      labNet: await labNet(t),
      timeScale: 0.01,
      timerWait: 4,
    });
    const get = getter(report);
    t.equal(
      get('idle-400ms', E443, 'protocol').outcome,
      'pass',
      'the APF setup completes before the idle kill',
    );
    const killed = get('idle-400ms', E443, 'tunnel-keepalive');
    t.equal(killed.outcome, 'fail');
    t.match(killed.message, /^idle timer: the proxy closed a silent tunnel after 0\.\d s without traffic/);
    t.match(killed.evidence, { timers: { timer: 'idle', agentGapSeconds: 30, waitedSeconds: 4 } });
    t.match(killed.remediation, /idle timer.*silent up to 30 s.*read_timeout/);

    // a 2 s idle timer: the replayed session (a keep-alive every 300 ms) never sees it, the
    // silent probe does; the agent really is silent 30 s between keep-alives, so this fails
    const hidden = get('idle-2000ms', E443, 'tunnel-keepalive');
    t.equal(hidden.outcome, 'fail', hidden.message);
    t.match(hidden.message, /^idle timer: the proxy closed a silent tunnel after 2(\.\d)? s without traffic/);
    t.match(hidden.evidence, { closedBy: 'agent' }, 'the compressed session itself completed');
    const timers = hidden.evidence.timers as { idleTimerSeconds: number; busySurvivedSeconds: number };
    t.ok(
      timers.idleTimerSeconds >= 1.9 && timers.idleTimerSeconds < 3,
      `measured ${timers.idleTimerSeconds} s`,
    );
    t.ok(timers.busySurvivedSeconds >= 3.9, 'the busy probe held the whole wait: not a lifetime cap');
    t.ok(long.kills.length >= 1, 'the proxy did kill the silent probe');
  },
);

t.test('a wait too short to know is a skip naming the option, never a pass', async (t) => {
  const report = await runMatrix({
    proxies: ['chain-plain'],
    profiles: ['cira-443'],
    scenarios,
    labNet: await labNet(t),
    timerWait: 1,
  });
  const ka = getter(report)('chain-plain', E443, 'tunnel-keepalive');
  t.equal(ka.outcome, 'skip', ka.message);
  t.equal(ka.expected, 'skip', 'expected as not known, so the run stays green');
  t.match(
    ka.message,
    /^not known in 1 s of real time: whether the tunnel survives the agent's 30 s of silence/,
  );
  t.match(ka.message, /Run with --timer-wait 300/);
});

t.test('APF codec: every message of the subset round-trips, also fed one byte at a time', async (t) => {
  const messages: ApfMessage[] = [
    { type: 'protocol-version', major: 1, minor: 0, triggerReason: 4, uuid: Buffer.alloc(16, 7) },
    { type: 'service-request', service: 'auth@amt.intel.com' },
    { type: 'service-accept', service: 'pfwd@amt.intel.com' },
    {
      type: 'userauth-request',
      username: 'u',
      service: 'pfwd@amt.intel.com',
      method: 'password',
      password: 'p',
    },
    { type: 'userauth-success' },
    { type: 'global-request', name: 'tcpip-forward', wantReply: true, address: '', port: 16993 },
    { type: 'request-success', port: 16993 },
    { type: 'keepalive-request', cookie: 0xdeadbeef },
    { type: 'keepalive-reply', cookie: 0xdeadbeef },
    { type: 'disconnect', reason: 11 },
  ];
  t.equal(
    encodeApf(messages[0] as ApfMessage).length,
    93,
    'PROTOCOLVERSION is 93 bytes, as the MPS reads it',
  );
  t.same([...encodeApf({ type: 'keepalive-request', cookie: 0x01020304 })], [208, 1, 2, 3, 4]);
  const wire = Buffer.concat(messages.map(encodeApf));
  let buf = Buffer.alloc(0);
  const got: ApfMessage[] = [];
  for (const byte of wire) {
    buf = Buffer.concat([buf, Buffer.from([byte])]);
    const d = decodeApf(buf, { requestSuccessWithPort: got.length === 6 });
    if (d) {
      got.push(d.message);
      buf = buf.subarray(d.bytes);
    }
  }
  t.same(got, messages);
  t.throws(() => decodeApf(Buffer.from([99, 0, 0])), /outside the APF subset/);
});

t.test('the apf origin really checks the device certificate', async (t) => {
  const { lab, pki } = await testLab(t, await labNet(t), [
    { host: HOST, ports: [{ port: 4433, transport: 'tls', mtls: true, service: 'apf' }] },
  ]);
  const address = lab.addressOf(HOST) ?? '';
  const attempt = (cert?: { certPem: string; keyPem: string }) =>
    new Promise<string>((resolve) => {
      const s = tls.connect({
        host: address,
        port: 4433,
        servername: HOST,
        ca: pki.labRoot.cert.certPem,
        ...(cert ? { cert: cert.certPem, key: cert.keyPem } : {}),
      });
      const timer = setTimeout(() => done('no answer within 5000 ms'), 5_000);
      let buf = Buffer.alloc(0);
      const done = (v: string) => {
        clearTimeout(timer);
        s.destroy();
        resolve(v);
      };
      s.on('secureConnect', () =>
        s.write(
          encodeApf({
            type: 'protocol-version',
            major: 1,
            minor: 0,
            triggerReason: 4,
            uuid: Buffer.alloc(16),
          }),
        ),
      );
      s.on('data', (c: Buffer) => {
        buf = Buffer.concat([buf, c]);
        const first = decodeApf(buf);
        const second = first && decodeApf(buf.subarray(first.bytes));
        if (second?.message.type === 'origin-info') done(`verified ${second.message.info.clientCertCN}`);
      });
      s.on('error', (err) => done(`error ${err.message}`));
      s.on('close', () => done('closed'));
    });
  t.equal(await attempt(pki.deviceCa.issueLeaf([DEVICE_CN], { clientAuth: true })), `verified ${DEVICE_CN}`);
  t.match(await attempt(), /^error .*certificate required/, 'no client certificate: refused');
  t.match(
    await attempt(pki.corporate.issueLeaf([DEVICE_CN], { clientAuth: true })),
    /^(error|closed)/,
    'a client certificate from another CA: refused',
  );
});

const REAL = existsSync(`${SCENARIOS_DIR}profiles/vpro-cira.yaml`);
t.test(
  'the real vpro-cira profile through chain-plain',
  REAL ? {} : { skip: 'scenarios/profiles/vpro-cira.yaml not there yet' },
  async (t) => {
    const report = await runMatrix({
      proxies: ['chain-plain'],
      profiles: ['vpro-cira'],
      labNet: await labNet(t),
      timeScale: FAST,
      timerWait: 2,
    });
    const get = getter(report);
    for (const endpoint of [E443, E4433]) {
      for (const check of CHECKS.filter((c) => c !== 'tunnel-keepalive'))
        t.equal(get('chain-plain', endpoint, check).outcome, 'pass', `${endpoint} ${check}`);
      // 2 s of real time cannot tell the 30 s keep-alive gap: not known, never a pass
      const ka = get('chain-plain', endpoint, 'tunnel-keepalive');
      t.equal(ka.outcome, 'skip', `${endpoint} tunnel-keepalive: ${ka.message}`);
      t.equal(ka.expected, 'skip');
    }
  },
);
