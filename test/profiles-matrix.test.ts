/**
 * Every real profile (scenarios/profiles) through chain-plain, chain-mitm and squid's policies,
 * with the real protocol libraries on both ends. Two kinds of assertion:
 *  - the truths the project is built on, stated here on their own (not through the expectation
 *    files): which ports squid's stock policy refuses, what interception breaks, what splicing saves;
 *  - every result matches scenarios/expectations (each rule there has its reason), so a change in
 *    any proxy's behaviour or any kind's verdict shows up as an unexpected result.
 */
import t from 'tap';
import type { CheckResult } from '../harness/model.ts';
import { SquidProxy } from '../harness/proxies/squid/squid.ts';
import { runMatrix } from '../harness/runner/run.ts';
import { loadScenarios } from '../harness/scenarios.ts';
import { labNet } from './helpers/lab-net.ts';
import { requireComponent, squidProblem } from './helpers/requirements.ts';

const set = loadScenarios();
const everyProfile = [...set.profiles.keys()];

function unexpected(results: CheckResult[]): string[] {
  return results
    .filter((r) => !r.matched)
    .map((r) => `${r.id}: ${r.outcome}, expected ${r.expected}: ${r.message}`);
}

function finder(results: CheckResult[]) {
  return (proxy: string, endpoint: string | RegExp, check: string): CheckResult[] =>
    results.filter(
      (r) =>
        r.proxy === proxy &&
        r.check === check &&
        (typeof endpoint === 'string' ? r.endpoint === endpoint : endpoint.test(r.endpoint)),
    );
}

t.test('all profiles through chain-plain and chain-mitm', { timeout: 300_000 }, async (t) => {
  const report = await runMatrix({
    proxies: ['chain-plain', 'chain-mitm'],
    profiles: ['all'],
    scenarios: set,
    labNet: await labNet(t),
  });
  const find = finder(report.results);
  t.same(new Set(report.results.map((r) => r.profile)), new Set(everyProfile), 'every profile ran');
  t.same(unexpected(report.results), [], 'every result matches its expectation');

  // chain-plain carries every agent as it is
  const plainBad = report.results.filter(
    (r) =>
      r.proxy === 'chain-plain' &&
      !['pass', 'skip'].includes(r.outcome) &&
      !(r.check === 'headers' && r.outcome === 'warn'),
  );
  t.same(
    plainBad.map((r) => r.id),
    [],
    'chain-plain: nothing fails',
  );
  for (const r of find('chain-plain', /./, 'protocol')) t.equal(r.outcome, 'pass', `${r.id}: ${r.message}`);
  t.ok(find('chain-plain', /./, 'protocol').length >= 5, 'WebSocket, MQTT, AMQP and APF sessions all ran');

  // chain-mitm breaks pinned hosts and CIRA mTLS
  for (const r of find('chain-mitm', /^ent-shasta-rrs\.symantec\.com:443/, 'pinning')) {
    t.equal(r.outcome, 'fail');
    t.match(r.message, /pinned agent fails closed/);
  }
  for (const r of find('chain-mitm', /^iagent\.flexxible\.com:/, 'mtls')) {
    t.equal(r.outcome, 'fail');
    t.match(r.message, /cannot carry the device certificate/);
  }
  for (const r of find('chain-mitm', /^iagent\.flexxible\.com:/, 'tls-interception')) {
    t.equal(r.outcome, 'fail');
    t.match(r.message, /re-signed by "proxycheck Corporate Inspection CA"/);
  }
});

const squid = requireComponent(t, 'squid', squidProblem());

t.test(
  'all profiles through squid-default, squid-bump and squid-splice (process)',
  { ...squid, timeout: 400_000 },
  async (t) => {
    const report = await runMatrix({
      proxies: ['default', 'bump', 'splice'].map(
        (flavour) => new SquidProxy({ flavour: flavour as 'default', runtime: 'process' }),
      ),
      profiles: ['all'],
      scenarios: set,
      labNet: await labNet(t),
    });
    const find = finder(report.results);
    t.same(unexpected(report.results), [], 'every result matches its expectation');

    // squid's stock policy refuses CONNECT to 13000, 2222, 8883 and 4433 (and every other non-443 port)
    for (const port of [13000, 2222, 8883, 4433]) {
      const refused = find('squid-default', new RegExp(`:${port}(#|$)`), 'connect');
      t.ok(refused.length > 0, `an exchange reaches port ${port}`);
      for (const r of refused) {
        t.equal(r.outcome, 'fail', r.id);
        t.match(r.message, /answered "HTTP\/1\.1 403 Forbidden"/);
        t.match(r.remediation, `acl SSL_ports port ${port}`);
      }
    }
    // ... and ESET's push service then fails over to 443, as documented
    const failover = find('squid-default', /:443$/, 'failover');
    t.equal(failover.length, 1);
    t.equal(failover[0]?.outcome, 'pass', String(failover[0]?.message));
    t.match(failover[0]?.message, /8883/);
    // 443 and 80 work
    // CIRA's 30 s gap and 300 s session are not waited for in a default run: not known, not a pass
    for (const r of find('squid-default', /^iagent\.flexxible\.com:443$/, 'tunnel-keepalive'))
      t.equal(r.outcome, 'skip', r.message);
    for (const r of find('squid-default', /:80$/, 'forward')) t.equal(r.outcome, 'pass', r.id);

    // squid-bump breaks pinned hosts and CIRA mTLS; squid-splice does not
    for (const host of ['ent-shasta-rrs.symantec.com', 'sp.cwfservice.net', 'tus1gwynwapex01.symantec.com']) {
      t.equal(find('squid-bump', `${host}:443`, 'pinning')[0]?.outcome, 'fail', `bump breaks pinned ${host}`);
      t.equal(
        find('squid-splice', `${host}:443`, 'pinning')[0]?.outcome,
        'pass',
        `splice keeps pinned ${host}`,
      );
    }
    t.equal(
      find('squid-bump', 'iagent.flexxible.com:443', 'mtls')[0]?.outcome,
      'fail',
      'bump breaks CIRA mTLS',
    );
    const spliced = find('squid-splice', 'iagent.flexxible.com:443', 'mtls')[0];
    t.equal(spliced?.outcome, 'pass', 'splice carries CIRA mTLS');
    t.match(spliced?.message, /device\.iagent\.flexxible\.com/);
    t.equal(find('squid-splice', 'iagent.flexxible.com:443', 'tunnel-keepalive')[0]?.outcome, 'skip');
  },
);
