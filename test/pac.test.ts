/**
 * PAC files as agents run them (harness/route/pac.ts): every answer shape parsed in order, the PAC
 * built-ins answered from the lab's own name service and never the OS resolver, each fetch failure
 * (missing file, unresolvable WPAD host, 404, silent server, untrusted or mismatched certificate)
 * named as one, a throwing, broken, non-answering or looping script reported by its stage, and a
 * looping PAC stopped at its deadline while the event loop keeps running. Servers listen on
 * 127.0.0.1 only.
 */
import { execFile } from 'node:child_process';
import { lookup } from 'node:dns/promises';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import t, { type Test } from 'tap';
import { HarnessError } from '../harness/errors.ts';
import { CertificateAuthority } from '../harness/lab/pki.ts';
import { loadPac, type Pac, type PacEnvironment, parsePacAnswer } from '../harness/route/pac.ts';

const WPAD = 'wpad.proxycheck.test';
const execFileP = promisify(execFile);

/** The lab's name service: a fixed map; every question it is asked is kept. */
function labEnv(names: Record<string, string>, myIp?: string): PacEnvironment & { asked: string[] } {
  const asked: string[] = [];
  return {
    asked,
    resolve: (host) => {
      asked.push(host);
      return names[host];
    },
    ...(myIp ? { myIp } : {}),
  };
}

async function pacFromText(t: Test, text: string, env: PacEnvironment = labEnv({})): Promise<Pac> {
  const loaded = await loadPac({ text, name: 'inline.pac' }, env, { fetchDeadlineMs: 1000 });
  if (!loaded.ok) throw new Error(`loading the test PAC failed at ${loaded.stage}: ${loaded.error}`);
  t.teardown(() => loaded.pac.close());
  return loaded.pac;
}

/** FindProxyForURL returning `answer` (a JS expression) for every host. */
const returning = (answer: string) => `function FindProxyForURL(url, host) { return ${answer}; }`;

const find = (pac: Pac, host: string, deadlineMs = 2000) => pac.find(`http://${host}/`, host, { deadlineMs });

/** One HTTP server for the file; each test sets the handler. */
let handler: http.RequestListener = (_req, res) => res.end();
const sockets = new Set<Socket>();
const server = http.createServer((req, res) => handler(req, res));
server.on('connection', (s) => {
  sockets.add(s);
  s.on('close', () => sockets.delete(s));
});
await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
const port = (server.address() as AddressInfo).port;
t.teardown(
  () =>
    new Promise<void>((r) => {
      for (const s of sockets) s.destroy();
      server.close(() => r());
    }),
);

const tmp = mkdtempSync(join(tmpdir(), 'pac-test-'));
t.teardown(() => rmSync(tmp, { recursive: true, force: true }));

t.test('parsePacAnswer: entries in order, keywords in any case, empties skipped', async (t) => {
  t.strictSame(parsePacAnswer('PROXY a:1; PROXY b:2; DIRECT'), {
    ok: true,
    entries: [
      { type: 'PROXY', host: 'a', port: 1 },
      { type: 'PROXY', host: 'b', port: 2 },
      { type: 'DIRECT' },
    ],
  });
  t.strictSame(
    parsePacAnswer(
      ' proxy p.corp.test:3128;;  ; Https h:443;socks s:1080; SOCKS4 f:1; socks5 [::1]:9050; direct ;',
    ),
    {
      ok: true,
      entries: [
        { type: 'PROXY', host: 'p.corp.test', port: 3128 },
        { type: 'HTTPS', host: 'h', port: 443 },
        { type: 'SOCKS', host: 's', port: 1080 },
        { type: 'SOCKS4', host: 'f', port: 1 },
        { type: 'SOCKS5', host: '::1', port: 9050 },
        { type: 'DIRECT' },
      ],
    },
  );
});

t.test('parsePacAnswer: a malformed entry is an error naming it', async (t) => {
  t.strictSame(parsePacAnswer('PROXY nohostport'), {
    ok: false,
    error: 'entry "PROXY nohostport": "nohostport" is not host:port with a port 1-65535',
  });
  t.strictSame(parsePacAnswer('PROXY a:1; BOGUS x:1'), {
    ok: false,
    error: 'entry "BOGUS x:1": unknown keyword BOGUS (PROXY, HTTPS, SOCKS, SOCKS4, SOCKS5 or DIRECT)',
  });
  t.strictSame(parsePacAnswer('DIRECT; PROXY'), { ok: false, error: 'entry "PROXY": PROXY needs host:port' });
  t.strictSame(parsePacAnswer('PROXY a:0'), {
    ok: false,
    error: 'entry "PROXY a:0": "a:0" is not host:port with a port 1-65535',
  });
  t.strictSame(parsePacAnswer('SOCKS5 a:65536'), {
    ok: false,
    error: 'entry "SOCKS5 a:65536": "a:65536" is not host:port with a port 1-65535',
  });
  t.strictSame(parsePacAnswer('PROXY a:1 b:2'), {
    ok: false,
    error: 'entry "PROXY a:1 b:2": PROXY takes one host:port',
  });
  t.strictSame(parsePacAnswer('DIRECT a:1'), {
    ok: false,
    error: 'entry "DIRECT a:1": DIRECT takes no address',
  });
  t.strictSame(parsePacAnswer(' ; ;'), { ok: false, error: 'answer " ; ;" has no entries' });
});

t.test('a list answer comes back parsed in order, with the raw text', async (t) => {
  const pac = await pacFromText(t, returning('"PROXY a:1; PROXY b:2; DIRECT"'));
  t.strictSame(await find(pac, 'any.test'), {
    ok: true,
    raw: 'PROXY a:1; PROXY b:2; DIRECT',
    entries: [
      { type: 'PROXY', host: 'a', port: 1 },
      { type: 'PROXY', host: 'b', port: 2 },
      { type: 'DIRECT' },
    ],
  });
});

t.test('a plain DIRECT PAC given as text', async (t) => {
  const text = returning('"DIRECT"');
  const loaded = await loadPac({ text, name: 'direct.pac' }, labEnv({}), { fetchDeadlineMs: 1000 });
  if (!loaded.ok) throw new Error(loaded.error);
  t.teardown(() => loaded.pac.close());
  t.equal(loaded.source, 'direct.pac');
  t.equal(loaded.pac.source, 'direct.pac');
  t.equal(loaded.bytes, Buffer.byteLength(text));
  t.equal(loaded.fetchMs, 0);
  t.strictSame(await find(loaded.pac, 'example.test'), {
    ok: true,
    raw: 'DIRECT',
    entries: [{ type: 'DIRECT' }],
  });
});

t.test(
  'per-host answers from shExpMatch, dnsDomainIs, isInNet and dnsResolve through the lab resolver',
  async (t) => {
    const env = labEnv({
      'app.intra.test': '10.20.30.40',
      'db.lab.test': '192.168.7.9',
      'named.test': '10.99.0.1',
    });
    const pac = await pacFromText(
      t,
      `function FindProxyForURL(url, host) {
      if (shExpMatch(url, "http://*.corp.test/*")) return "PROXY corp-proxy:3128";
      if (isPlainHostName(host)) return "DIRECT";
      if (isInNet(host, "10.20.0.0", "255.255.0.0")) return "PROXY ten-twenty:8080";
      if (isInNet(host, "192.168.7.0", "255.255.255.0")) return "SOCKS5 lab-socks:1080";
      if (dnsDomainIs(host, ".intra.test")) return "PROXY never-reached:1";
      if (isResolvable(host)) return "PROXY " + dnsResolve(host) + ":3128";
      return "HTTPS fallback:443; DIRECT";
    }`,
      env,
    );
    const raw = async (host: string) => {
      const a = await find(pac, host);
      return a.ok ? a.raw : `${a.stage}: ${a.error}`;
    };
    t.equal(await raw('www.corp.test'), 'PROXY corp-proxy:3128');
    t.equal(await raw('intranet'), 'DIRECT');
    t.equal(await raw('app.intra.test'), 'PROXY ten-twenty:8080');
    t.equal(await raw('10.20.1.1'), 'PROXY ten-twenty:8080', 'an IP literal is its own address');
    t.equal(await raw('db.lab.test'), 'SOCKS5 lab-socks:1080');
    t.equal(await raw('named.test'), 'PROXY 10.99.0.1:3128');
    t.equal(await raw('nowhere.test'), 'HTTPS fallback:443; DIRECT');
    t.notOk(env.asked.includes('10.20.1.1'), 'the lab resolver is not asked about an IP literal');
    t.ok(env.asked.includes('nowhere.test'), 'the lab resolver was asked about the unknown name');
  },
);

t.test('the OS resolver is never used: a name only the OS knows does not resolve', async (t) => {
  const os = await lookup('localhost', { family: 4 }).catch(() => undefined);
  t.equal(os?.address, '127.0.0.1', 'the OS itself resolves localhost (so a leak would show)');
  const env = labEnv({});
  const pac = await pacFromText(
    t,
    `function FindProxyForURL(url, host) {
      var address = dnsResolve(host);
      var resolvable = isResolvable(host);
      var loopback = isInNet(host, "127.0.0.0", "255.0.0.0");
      return "PROXY " + address + "-" + resolvable + "-" + loopback + ":1";
    }`,
    env,
  );
  const a = await find(pac, 'localhost');
  t.strictSame(a, {
    ok: true,
    raw: 'PROXY null-false-false:1',
    entries: [{ type: 'PROXY', host: 'null-false-false', port: 1 }],
  });
  t.strictSame(env.asked, ['localhost', 'localhost', 'localhost']);
});

t.test('myIpAddress() answers env.myIp, or 127.0.0.1 by default, without dialing', async (t) => {
  const body = returning('"PROXY " + myIpAddress() + ":1"');
  const set = await find(await pacFromText(t, body, labEnv({}, '10.77.0.5')), 'x.test');
  t.equal(set.ok && set.raw, 'PROXY 10.77.0.5:1');
  const unset = await find(await pacFromText(t, body, labEnv({})), 'x.test');
  t.equal(unset.ok && unset.raw, 'PROXY 127.0.0.1:1');
});

t.test('a PAC loaded from a file', async (t) => {
  const file = join(tmp, 'proxy.pac');
  const text = returning('"PROXY from-file:8080"');
  writeFileSync(file, text);
  const loaded = await loadPac({ file }, labEnv({}), { fetchDeadlineMs: 1000 });
  if (!loaded.ok) throw new Error(loaded.error);
  t.teardown(() => loaded.pac.close());
  t.equal(loaded.source, file);
  t.equal(loaded.bytes, Buffer.byteLength(text));
  t.strictSame(await find(loaded.pac, 'x.test'), {
    ok: true,
    raw: 'PROXY from-file:8080',
    entries: [{ type: 'PROXY', host: 'from-file', port: 8080 }],
  });
});

t.test('a PAC fetched over http from the name the lab resolves, with that name in Host', async (t) => {
  const body = returning('"PROXY wpad-proxy:3128; DIRECT"');
  const seen: Array<{ host?: string; url?: string; method?: string }> = [];
  handler = (req, res) => {
    seen.push({ host: req.headers.host, url: req.url, method: req.method });
    res.writeHead(200, { 'Content-Type': 'application/x-ns-proxy-autoconfig' });
    res.end(body);
  };
  const env = labEnv({ [WPAD]: '127.0.0.1' });
  const url = `http://${WPAD}:${port}/wpad.dat?v=1`;
  const loaded = await loadPac({ url }, env, { fetchDeadlineMs: 3000 });
  if (!loaded.ok) throw new Error(loaded.error);
  t.teardown(() => loaded.pac.close());
  t.strictSame(seen, [{ host: `${WPAD}:${port}`, url: '/wpad.dat?v=1', method: 'GET' }]);
  t.strictSame(env.asked, [WPAD]);
  t.equal(loaded.source, url);
  t.equal(loaded.bytes, Buffer.byteLength(body));
  t.ok(loaded.fetchMs >= 0 && loaded.fetchMs < 3000);
  const a = await find(loaded.pac, 'example.test');
  t.equal(a.ok && a.raw, 'PROXY wpad-proxy:3128; DIRECT');
});

t.test('fetch errors, one per cause, each named and none turned into DIRECT', async (t) => {
  const env = labEnv({ [WPAD]: '127.0.0.1' });
  const o = { fetchDeadlineMs: 400 };

  const missing = join(tmp, 'no-such.pac');
  t.strictSame(await loadPac({ file: missing }, env, o), {
    ok: false,
    stage: 'fetch',
    source: missing,
    error: `ENOENT: no such file or directory, open '${missing}'`,
  });

  const unresolvable = 'http://wpad.elsewhere.test/wpad.dat';
  t.strictSame(await loadPac({ url: unresolvable }, env, o), {
    ok: false,
    stage: 'fetch',
    source: unresolvable,
    error: 'wpad.elsewhere.test does not resolve',
  });

  handler = (_req, res) => {
    res.writeHead(404, { 'Content-Type': 'text/plain' });
    res.end('not here');
  };
  const notFound = `http://${WPAD}:${port}/wpad.dat`;
  t.strictSame(await loadPac({ url: notFound }, env, o), {
    ok: false,
    stage: 'fetch',
    source: notFound,
    error: 'answered "HTTP/1.1 404 Not Found"',
  });

  handler = (_req, res) => {
    res.writeHead(302, { Location: 'http://elsewhere.test/proxy.pac' });
    res.end();
  };
  const moved = await loadPac({ url: notFound }, env, o);
  t.equal(
    !moved.ok && moved.error,
    'answered "HTTP/1.1 302 Found" (Location: http://elsewhere.test/proxy.pac; not followed)',
  );

  handler = () => {}; // takes the request and never answers
  const t0 = performance.now();
  t.strictSame(await loadPac({ url: notFound }, env, o), {
    ok: false,
    stage: 'fetch',
    source: notFound,
    error: 'no answer within 400 ms (fetchDeadlineMs)',
  });
  const waited = performance.now() - t0;
  t.ok(waited >= 390 && waited < 2400, `gave up after the deadline (${Math.round(waited)} ms)`);

  const closed = http.createServer();
  await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
  const closedPort = (closed.address() as AddressInfo).port;
  await new Promise<void>((r) => closed.close(() => r()));
  const refused = await loadPac({ url: `http://127.0.0.1:${closedPort}/wpad.dat` }, env, o);
  t.equal(!refused.ok && refused.error, `connect ECONNREFUSED 127.0.0.1:${closedPort}`);

  t.strictSame(await loadPac({ url: 'ftp://x/wpad.dat' }, env, o), {
    ok: false,
    stage: 'fetch',
    source: 'ftp://x/wpad.dat',
    error: 'ftp: is not fetched (http: or https: only)',
  });
});

t.test('https: trusted through the given CA, checked against the URL name, not the address', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'pac-tls-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const ca = await CertificateAuthority.create(dir, 'pac-ca', 'PAC Test Root');
  const leaf = ca.issueLeaf([WPAD]);
  const body = returning('"PROXY tls-wpad:3128"');
  const tlsServer = https.createServer({ cert: leaf.certPem, key: leaf.keyPem }, (_req, res) =>
    res.end(body),
  );
  await new Promise<void>((r) => tlsServer.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => tlsServer.close(() => r())));
  const tlsPort = (tlsServer.address() as AddressInfo).port;
  const env = labEnv({ [WPAD]: '127.0.0.1', 'other.proxycheck.test': '127.0.0.1' });

  const loaded = await loadPac({ url: `https://${WPAD}:${tlsPort}/wpad.dat` }, env, {
    fetchDeadlineMs: 3000,
    ca: [ca.cert.certPem],
  });
  if (!loaded.ok) throw new Error(loaded.error);
  t.teardown(() => loaded.pac.close());
  const a = await find(loaded.pac, 'x.test');
  t.equal(a.ok && a.raw, 'PROXY tls-wpad:3128');

  const untrusted = await loadPac({ url: `https://${WPAD}:${tlsPort}/wpad.dat` }, env, {
    fetchDeadlineMs: 3000,
  });
  t.equal(!untrusted.ok && untrusted.stage, 'fetch');
  // Node 24 appends a hint about --use-system-ca to this message; Node 20 does not
  t.match(
    !untrusted.ok && untrusted.error,
    /^UNABLE_TO_VERIFY_LEAF_SIGNATURE: unable to verify the first certificate/,
  );

  const otherName = await loadPac({ url: `https://other.proxycheck.test:${tlsPort}/wpad.dat` }, env, {
    fetchDeadlineMs: 3000,
    ca: [ca.cert.certPem],
  });
  t.equal(otherName.ok, false);
  t.match(!otherName.ok && otherName.error, /^ERR_TLS_CERT_ALTNAME_INVALID: Hostname\/IP does not match/);
});

t.test('a syntax error is found at load time, with the parser message', async (t) => {
  t.strictSame(
    await loadPac(
      { text: 'function FindProxyForURL(url, host) { return "DIRECT";', name: 'cut.pac' },
      labEnv({}),
      {
        fetchDeadlineMs: 1000,
      },
    ),
    { ok: false, stage: 'syntax', source: 'cut.pac', error: 'SyntaxError: Line 1: Unexpected end of input' },
  );
});

t.test('a script without FindProxyForURL is a syntax-stage error', async (t) => {
  const env = labEnv({});
  const o = { fetchDeadlineMs: 1000 };
  t.strictSame(await loadPac({ text: 'var proxy = "DIRECT";', name: 'none.pac' }, env, o), {
    ok: false,
    stage: 'syntax',
    source: 'none.pac',
    error: 'the script defines no FindProxyForURL function (ReferenceError: FindProxyForURL is not defined)',
  });
  const notFn = await loadPac({ text: 'var FindProxyForURL = "DIRECT";', name: 'var.pac' }, env, o);
  t.equal(
    !notFn.ok && notFn.error,
    'the script defines no FindProxyForURL function (Error: Expected a "function" named `FindProxyForURL` to be defined, but got "string")',
  );
  const empty = await loadPac({ text: '', name: 'empty.pac' }, env, o);
  t.equal(!empty.ok && empty.stage, 'syntax');
});

t.test('a script whose top level never finishes is stopped at evalDeadlineMs', async (t) => {
  const t0 = performance.now();
  t.strictSame(
    await loadPac({ text: `for (;;) {}\n${returning('"DIRECT"')}`, name: 'spin.pac' }, labEnv({}), {
      fetchDeadlineMs: 1000,
      evalDeadlineMs: 300,
    }),
    {
      ok: false,
      stage: 'syntax',
      source: 'spin.pac',
      error: "the script's top level did not finish within 300 ms (evalDeadlineMs)",
    },
  );
  t.ok(performance.now() - t0 < 5000);
});

t.test('a throwing FindProxyForURL is stage throws, with its message', async (t) => {
  const pac = await pacFromText(
    t,
    `function FindProxyForURL(url, host) {
      if (host === "str.test") throw "plain string";
      throw new TypeError("no route for " + host);
    }`,
  );
  t.strictSame(await find(pac, 'a.test'), {
    ok: false,
    stage: 'throws',
    error: 'FindProxyForURL threw TypeError: no route for a.test',
  });
  t.strictSame(await find(pac, 'str.test'), {
    ok: false,
    stage: 'throws',
    error: 'FindProxyForURL threw Error: plain string',
  });
});

t.test('answers that are not a proxy list are stage answer', async (t) => {
  const pac = await pacFromText(
    t,
    `function FindProxyForURL(url, host) {
      switch (host) {
        case "nohostport.test": return "PROXY nohostport";
        case "bogus.test": return "BOGUS x:1";
        case "number.test": return 42;
        case "null.test": return null;
        case "undefined.test": return;
        case "empty.test": return "";
        default: return " ; ";
      }
    }`,
  );
  const error = async (host: string) => {
    const a = await find(pac, host);
    return a.ok ? `ok: ${a.raw}` : `${a.stage}: ${a.error}`;
  };
  t.equal(
    await error('nohostport.test'),
    'answer: entry "PROXY nohostport": "nohostport" is not host:port with a port 1-65535',
  );
  t.equal(
    await error('bogus.test'),
    'answer: entry "BOGUS x:1": unknown keyword BOGUS (PROXY, HTTPS, SOCKS, SOCKS4, SOCKS5 or DIRECT)',
  );
  t.equal(await error('number.test'), 'answer: FindProxyForURL returned number 42, not a string');
  t.equal(await error('null.test'), 'answer: FindProxyForURL returned null, not a string');
  t.equal(await error('undefined.test'), 'answer: FindProxyForURL returned undefined, not a string');
  t.equal(await error('empty.test'), 'answer: FindProxyForURL returned an empty string');
  t.equal(await error('semicolons.test'), 'answer: answer " ; " has no entries');
});

t.test(
  'a looping PAC stops at the deadline, the event loop keeps ticking, the next call works',
  async (t) => {
    const pac = await pacFromText(
      t,
      `function FindProxyForURL(url, host) {
      if (host === "loop.test") for (;;) {}
      return "PROXY after-loop:1";
    }`,
    );
    let ticks = 0;
    const interval = setInterval(() => ticks++, 20);
    t.teardown(() => clearInterval(interval));
    const t0 = performance.now();
    const a = await find(pac, 'loop.test', 500);
    const waited = performance.now() - t0;
    clearInterval(interval);
    t.strictSame(a, {
      ok: false,
      stage: 'deadline',
      error: 'FindProxyForURL gave no answer within 500 ms (deadlineMs)',
    });
    t.ok(waited >= 490 && waited < 3000, `answered at the deadline (${Math.round(waited)} ms)`);
    t.ok(
      ticks >= 8,
      `the event loop ran during the loop (${ticks} ticks of 20 ms in ${Math.round(waited)} ms)`,
    );
    const next = await find(pac, 'ok.test');
    t.equal(next.ok && next.raw, 'PROXY after-loop:1', 'a fresh engine answers the next call');
  },
);

t.test("a PAC that loops after a name lookup (inside the engine's job queue) is stopped too", async (t) => {
  const pac = await pacFromText(
    t,
    `function FindProxyForURL(url, host) {
      var address = dnsResolve(host);
      if (address === "10.6.6.6") for (;;) {}
      return "PROXY " + address + ":1";
    }`,
    labEnv({ 'spin.test': '10.6.6.6', 'fine.test': '10.1.1.1' }),
  );
  t.strictSame(await find(pac, 'spin.test', 300), {
    ok: false,
    stage: 'deadline',
    error: 'FindProxyForURL gave no answer within 300 ms (deadlineMs)',
  });
  const next = await find(pac, 'fine.test');
  t.equal(next.ok && next.raw, 'PROXY 10.1.1.1:1');
});

t.test('calls on one Pac run one at a time: a call queued behind a loop still gets its answer', async (t) => {
  const pac = await pacFromText(
    t,
    `function FindProxyForURL(url, host) {
      if (host === "loop.test") while (true) {}
      return "PROXY queued:1";
    }`,
  );
  const [looped, queued] = await Promise.all([find(pac, 'loop.test', 300), find(pac, 'ok.test', 300)]);
  t.equal(!looped.ok && looped.stage, 'deadline');
  t.equal(queued.ok && queued.raw, 'PROXY queued:1');
});

t.test('runaway recursion throws inside the engine; the Pac keeps answering', async (t) => {
  const pac = await pacFromText(
    t,
    `function down(n) { return down(n + 1); }
    function FindProxyForURL(url, host) {
      if (host === "deep.test") return down(0);
      return "PROXY still-here:1";
    }`,
  );
  t.strictSame(await find(pac, 'deep.test'), {
    ok: false,
    stage: 'throws',
    error: 'FindProxyForURL threw RangeError: Maximum call stack size exceeded',
  });
  const next = await find(pac, 'ok.test');
  t.equal(next.ok && next.raw, 'PROXY still-here:1');
});

t.test('a PAC that fills its heap throws "out of memory"; the Pac keeps answering', async (t) => {
  const pac = await pacFromText(
    t,
    `function FindProxyForURL(url, host) {
      if (host === "hog.test") { var all = []; for (;;) all.push("a string that keeps the heap growing " + all.length); }
      return "PROXY still-here:1";
    }`,
  );
  t.strictSame(await find(pac, 'hog.test', 20_000), {
    ok: false,
    stage: 'throws',
    error: 'FindProxyForURL threw InternalError: out of memory',
  });
  const next = await find(pac, 'ok.test');
  t.equal(next.ok && next.raw, 'PROXY still-here:1');
});

t.test('a lab resolver that throws is our own bug: the call rejects with a HarnessError', async (t) => {
  const env: PacEnvironment = {
    resolve: () => {
      throw new Error('resolver table missing');
    },
  };
  const pac = await pacFromText(t, returning('"PROXY " + dnsResolve(host) + ":1"'), env);
  await t.rejects(find(pac, 'x.test'), {
    name: 'HarnessError',
    message: 'the lab resolver failed on x.test: resolver table missing',
  });
});

t.test('a Pac left open does not keep the process alive', async (t) => {
  const pacUrl = new URL('../harness/route/pac.ts', import.meta.url).href;
  const code = `
    const { loadPac } = await import(${JSON.stringify(pacUrl)});
    const loaded = await loadPac({ text: 'function FindProxyForURL() { return "DIRECT"; }', name: 'open.pac' },
      { resolve: () => undefined }, { fetchDeadlineMs: 1000 });
    const a = await loaded.pac.find('http://x.test/', 'x.test', { deadlineMs: 5000 });
    console.log(a.ok && a.raw);`;
  // The child runs TypeScript through the same loaders as this test.
  const { stdout } = await execFileP(
    process.execPath,
    [...process.execArgv, '--input-type=module', '-e', code],
    {
      timeout: 20_000,
    },
  );
  t.equal(stdout.trim(), 'DIRECT', 'the child answered and exited on its own');
});

t.test('a closed Pac refuses calls as a harness error', async (t) => {
  const pac = await pacFromText(t, returning('"DIRECT"'));
  await pac.close();
  await t.rejects(find(pac, 'x.test'), HarnessError);
});

// Regression (proxy-agents#333): the emscripten build crashed after 2^15 host callbacks on one
// resolver. 40,000 calls that each call back into the lab resolver must all answer.
t.test('40,000 calls on one Pac, each through dnsResolve, all answer', async (t) => {
  const pac = await pacFromText(
    t,
    returning('"PROXY " + dnsResolve(host) + ":3128"'),
    labEnv({ 'many.test': '10.0.0.7' }),
  );
  let answered = 0;
  let first: string | undefined;
  for (let i = 0; i < 40_000; i++) {
    const a = await pac.find('http://many.test/', 'many.test', { deadlineMs: 5000 });
    if (!a.ok || a.raw !== 'PROXY 10.0.0.7:3128') {
      first = `call ${i}: ${a.ok ? a.raw : `${a.stage}: ${a.error}`}`;
      break;
    }
    answered++;
  }
  t.equal(first, undefined);
  t.equal(answered, 40_000);
});
