/**
 * What the squid policies really do at the CONNECT step, over real sockets (squid as a process):
 * squid-default refuses CONNECT to a non-443 port with 403 and the verdict quotes it and gives the
 * squid.conf line; squid-open lets the same port through; squid-auth answers 407 to a wrong password.
 */
import t from 'tap';
import { SquidProxy } from '../harness/proxies/squid/squid.ts';
import { runMatrix } from '../harness/runner/run.ts';
import { withCredentials } from './helpers/adapters.ts';
import { fixtureScenarios } from './helpers/fixtures.ts';
import { labNet } from './helpers/lab-net.ts';
import { requireComponent, squidProblem } from './helpers/requirements.ts';

const opts = requireComponent(t, 'squid', squidProblem());
const scenarios = fixtureScenarios();

t.test(
  'squid-default refuses CONNECT to 13000 with 403; squid-open tunnels it',
  { ...opts, timeout: 120_000 },
  async (t) => {
    const report = await runMatrix({
      proxies: [
        new SquidProxy({ flavour: 'default', runtime: 'process' }),
        new SquidProxy({ flavour: 'open', runtime: 'process' }),
      ],
      profiles: ['odd-port', 'unpinned'],
      scenarios,
      labNet: await labNet(t),
    });
    const get = (proxy: string, endpoint: string, check: string) =>
      report.results.find((r) => r.proxy === proxy && r.endpoint === endpoint && r.check === check);
    const refused = get('squid-default', 'odd-port.proxycheck.test:13000', 'connect');
    t.equal(refused?.outcome, 'fail');
    t.equal(
      refused?.message,
      'CONNECT odd-port.proxycheck.test:13000 answered "HTTP/1.1 403 Forbidden", not 200 (X-Squid-Error: ERR_ACCESS_DENIED 0)',
    );
    t.match(refused?.evidence, { answerHead: /X-Squid-Error: ERR_ACCESS_DENIED/ });
    t.match(refused?.remediation, 'acl SSL_ports port 13000');
    t.equal(
      get('squid-default', 'open.proxycheck.test:443', 'connect')?.outcome,
      'pass',
      '443 is allowed by the stock policy',
    );
    for (const check of ['connect', 'tls-interception', 'payload', 'headers']) {
      t.equal(
        get('squid-open', 'odd-port.proxycheck.test:13000', check)?.outcome,
        'pass',
        `squid-open ${check} on 13000`,
      );
    }
  },
);

t.test(
  'squid-auth answers 407 to a wrong password and tunnels with the right one',
  { ...opts, timeout: 120_000 },
  async (t) => {
    const report = await runMatrix({
      proxies: [
        withCredentials(new SquidProxy({ flavour: 'auth', runtime: 'process' }), 'squid-auth-wrong', {
          username: 'agent',
          password: 'wrong-one',
        }),
        new SquidProxy({ flavour: 'auth', runtime: 'process' }),
      ],
      profiles: ['unpinned'],
      scenarios,
      labNet: await labNet(t),
    });
    const wrong = report.results.find((r) => r.proxy === 'squid-auth-wrong' && r.check === 'connect');
    t.equal(wrong?.outcome, 'fail');
    t.match(wrong?.message, /answered "HTTP\/1\.1 407 Proxy Authentication Required"/);
    t.equal(report.results.find((r) => r.proxy === 'squid-auth' && r.check === 'payload')?.outcome, 'pass');
  },
);
