/**
 * squid's auth loop (SquidPolicy auth: 'loop'), over real sockets against squid as a process (and
 * in a container when an engine answers): Basic credentials are asked for and every one is
 * rejected. On one connection: no credentials -> 407 with a Basic challenge; the proxy's own
 * right-looking credentials -> 407 again; the same credentials once more -> 407 again. The control:
 * the same squid.conf with squid's basic_fake_auth (OK to everything) as the program tunnels, so the
 * 407s are the helper's ERR answers and nothing else.
 */
import { connect, type Socket } from 'node:net';
import t, { type Test } from 'tap';
import type { SquidPolicy } from '../harness/proxies/squid/config.ts';
import { SQUID_HELPER_DIR } from '../harness/proxies/squid/process.ts';
import { type SquidOptions, SquidProxy } from '../harness/proxies/squid/squid.ts';
import type { Runtime } from '../harness/proxies/toolkit/runtime.ts';
import type { StartedProxy } from '../harness/proxies/types.ts';
import { startProxy, testLab } from './helpers/fixtures.ts';
import { labNet } from './helpers/lab-net.ts';
import { containerEngineProblem, requireComponent, squidProblem } from './helpers/requirements.ts';

const opts = requireComponent(t, 'squid', squidProblem());
const WEB = 'web.proxycheck.test';
const LOOP: SquidPolicy = { connectPorts: 'stock', auth: 'loop', inspection: { mode: 'none', hosts: [] } };
const ANSWER_MS = 5_000;

interface Answer {
  status: number;
  head: string;
}

/** Reads answers (head + Content-Length body) off one socket, in order. */
class Conversation {
  private buf = Buffer.alloc(0);
  private waiting?: () => void;
  closed = false;
  constructor(readonly s: Socket) {
    s.on('data', (d: Buffer) => {
      this.buf = Buffer.concat([this.buf, d]);
      this.waiting?.();
    });
    s.on('close', () => {
      this.closed = true;
      this.waiting?.();
    });
    s.on('error', () => {});
  }

  /** Sends `head` and reads one whole answer; fails naming the deadline or an early close. */
  async ask(head: string): Promise<Answer> {
    this.s.write(head);
    const t0 = performance.now();
    for (;;) {
      const end = this.buf.indexOf('\r\n\r\n');
      if (end >= 0) {
        const text = this.buf.subarray(0, end).toString('latin1');
        const length = Number(/\r\ncontent-length: *(\d+)/i.exec(text)?.[1] ?? 0);
        if (this.buf.length >= end + 4 + length) {
          this.buf = this.buf.subarray(end + 4 + length);
          return { status: Number(text.split(' ')[1]), head: text };
        }
      }
      if (this.closed) throw new Error('the proxy closed the connection before a whole answer');
      const left = ANSWER_MS - (performance.now() - t0);
      if (left <= 0) throw new Error(`no whole answer within ${ANSWER_MS} ms`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiting = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
  }
}

function connectHead(credentials?: { username: string; password: string }): string {
  const auth = credentials
    ? `Proxy-Authorization: Basic ${Buffer.from(`${credentials.username}:${credentials.password}`).toString('base64')}\r\n`
    : '';
  return `CONNECT ${WEB}:443 HTTP/1.1\r\nHost: ${WEB}:443\r\n${auth}\r\n`;
}

async function conversation(t: Test, proxy: StartedProxy): Promise<Conversation> {
  const s = connect({ host: proxy.host, port: proxy.port });
  t.teardown(() => void s.destroy());
  await new Promise((resolve, reject) => s.once('connect', resolve).once('error', reject));
  return new Conversation(s);
}

async function loops(t: Test, proxy: StartedProxy): Promise<void> {
  t.equal(proxy.kind, 'auth', 'the agent is given credentials, as for any auth proxy');
  const credentials = proxy.credentials;
  if (!credentials) throw new Error(`${proxy.id}: no credentials`);
  const c = await conversation(t, proxy);

  const bare = await c.ask(connectHead());
  t.equal(bare.status, 407, 'no credentials: 407');
  t.match(bare.head, /\r\nProxy-Authenticate: Basic realm="proxycheck"/i, 'with a Basic challenge');
  const first = await c.ask(connectHead(credentials));
  t.equal(first.status, 407, 'right-looking credentials: 407 again');
  t.match(first.head, /\r\nProxy-Authenticate: Basic realm="proxycheck"/i, 'challenged again');
  const second = await c.ask(connectHead(credentials));
  t.equal(second.status, 407, 'a second try on the same connection: 407 again');
  t.notOk(c.closed, 'all three on one connection');
}

async function started(t: Test, runtime: Runtime, more: Partial<SquidOptions> = {}): Promise<StartedProxy> {
  const net = await labNet(t);
  const { lab, runDir } = await testLab(t, net, [{ host: WEB, ports: [{ port: 443, transport: 'https' }] }]);
  const proxy = new SquidProxy({ id: 'squid-auth-loop', policy: LOOP, runtime, ...more });
  t.match(proxy.describe(), /Basic auth that rejects every credential/);
  return startProxy(t, proxy, lab, runDir);
}

t.test(
  'auth loop, squid as a process: 407, 407, 407 on one connection',
  { ...opts, timeout: 60_000 },
  async (t) => {
    await loops(t, await started(t, 'process'));
  },
);

t.test(
  'control: the same config with a helper that says OK tunnels',
  { ...opts, timeout: 60_000 },
  async (t) => {
    let swapped = false;
    const proxy = await started(t, 'process', {
      amendConfig: (conf) =>
        conf.replace(/^auth_param basic program \S+$/m, () => {
          swapped = true;
          return `auth_param basic program ${SQUID_HELPER_DIR}/basic_fake_auth`;
        }),
    });
    t.ok(swapped, 'the program line was swapped');
    const c = await conversation(t, proxy);
    t.equal((await c.ask(connectHead())).status, 407, 'no credentials: 407');
    t.equal((await c.ask(connectHead(proxy.credentials))).status, 200, 'credentials: 200');
  },
);

const engine = await containerEngineProblem();
t.test(
  'auth loop, squid in a container: the helper runs there too',
  { ...opts, ...(engine ? { skip: `no container engine here: ${engine}` } : {}), timeout: 300_000 },
  async (t) => {
    await loops(t, await started(t, 'container'));
  },
);
