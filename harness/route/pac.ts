/**
 * A PAC file as an agent runs it: fetched over http(s) from the lab's own name service (never the
 * OS resolver), or read from a file, then evaluated by the real engine agents use (pac-resolver on
 * QuickJS). The script runs in a worker thread, so a PAC that loops forever costs one deadline and
 * a terminated worker, never a frozen event loop; the next call starts a fresh engine. Its name
 * lookups (dnsResolve, isResolvable, isInNet) go back to the lab's resolver and myIpAddress()
 * answers a fixed address, so a PAC never touches the network. Every failure is a value naming its
 * stage: fetch, syntax (the script could not be loaded), throws, deadline or answer; none becomes
 * DIRECT.
 */
import { readFile } from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import { isIP } from 'node:net';
import { Worker } from 'node:worker_threads';
import { errorMessage, HarnessError } from '../errors.ts';

export type PacEntry =
  | { type: 'DIRECT' }
  | { type: 'PROXY' | 'HTTPS' | 'SOCKS' | 'SOCKS4' | 'SOCKS5'; host: string; port: number };

/** Where PAC text comes from. */
export type PacSource = { url: string } | { file: string } | { text: string; name: string };

export interface PacEnvironment {
  /** The client's own name service (the lab's): an IPv4 address or undefined (does not resolve). NEVER the OS resolver. */
  resolve(host: string): string | undefined;
  /** What myIpAddress() answers (default '127.0.0.1'); must never dial anything. */
  myIp?: string;
}

export interface PacLoadOptions {
  /** Covers connect and the whole answer of an http(s) fetch. */
  fetchDeadlineMs: number;
  /** Trust for an https:// PAC URL (PEM certificates); without it, Node's default roots. */
  ca?: string[];
  /** How long the script's top level may run when it is loaded (default 2000 ms). */
  evalDeadlineMs?: number;
}

export type PacLoad =
  | { ok: true; pac: Pac; source: string; bytes: number; fetchMs: number }
  | { ok: false; stage: 'fetch' | 'syntax'; source: string; error: string };

export interface Pac {
  readonly source: string;
  /** Runs FindProxyForURL(url, host) under a deadline. Calls on one Pac run one at a time. */
  find(url: string, host: string, o: { deadlineMs: number }): Promise<PacAnswer>;
  /** Stops the engine's worker. A Pac left open does not keep the process alive. */
  close(): Promise<void>;
}

export type PacAnswer =
  | { ok: true; raw: string; entries: PacEntry[] }
  | { ok: false; stage: 'throws' | 'deadline' | 'answer'; error: string };

const DEFAULT_EVAL_DEADLINE_MS = 2000;
/** Starting a worker and the engine (not the script): generous, since only our own bugs run past it. */
const BOOT_DEADLINE_MS = 30_000;
/** The QuickJS heap a PAC may fill before its call throws "out of memory". */
const MEMORY_LIMIT = 64 * 1024 * 1024;
const PROXY_KEYWORDS = ['PROXY', 'HTTPS', 'SOCKS', 'SOCKS4', 'SOCKS5'] as const;

/** Fetches or reads the PAC text, then loads it into an engine (a syntax error shows here, not later). */
export async function loadPac(src: PacSource, env: PacEnvironment, o: PacLoadOptions): Promise<PacLoad> {
  const source = 'url' in src ? src.url : 'file' in src ? src.file : src.name;
  const t0 = performance.now();
  const got =
    'url' in src
      ? await fetchPacText(src.url, env, o)
      : 'file' in src
        ? await readPacFile(src.file)
        : { ok: true as const, body: Buffer.from(src.text, 'utf8') };
  if (!got.ok) return { ok: false, stage: 'fetch', source, error: got.error };
  const fetchMs = 'text' in src ? 0 : Math.round(performance.now() - t0);
  const script: Script = {
    text: got.body.toString('utf8').replace(/^\uFEFF/, ''),
    filename: source,
    myIp: env.myIp ?? '127.0.0.1',
    evalDeadlineMs: o.evalDeadlineMs ?? DEFAULT_EVAL_DEADLINE_MS,
  };
  const started = await Engine.start(script, env);
  if (!started.ok) return { ok: false, stage: 'syntax', source, error: started.error };
  return {
    ok: true,
    pac: new WorkerPac(source, script, env, started.engine),
    source,
    bytes: got.body.length,
    fetchMs,
  };
}

/** "PROXY a:3128; PROXY b:3128; DIRECT" → entries; a malformed entry is an error naming it. */
export function parsePacAnswer(
  raw: string,
): { ok: true; entries: PacEntry[] } | { ok: false; error: string } {
  const entries: PacEntry[] = [];
  for (const part of raw.split(';')) {
    const entry = part.trim();
    if (!entry) continue;
    const [word = '', address, ...rest] = entry.split(/\s+/);
    const keyword = word.toUpperCase();
    if (keyword === 'DIRECT') {
      if (address !== undefined) return { ok: false, error: `entry "${entry}": DIRECT takes no address` };
      entries.push({ type: 'DIRECT' });
      continue;
    }
    const type = PROXY_KEYWORDS.find((k) => k === keyword);
    if (!type) {
      return {
        ok: false,
        error: `entry "${entry}": unknown keyword ${word} (PROXY, HTTPS, SOCKS, SOCKS4, SOCKS5 or DIRECT)`,
      };
    }
    if (address === undefined) return { ok: false, error: `entry "${entry}": ${type} needs host:port` };
    if (rest.length) return { ok: false, error: `entry "${entry}": ${type} takes one host:port` };
    const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(address);
    const host = m?.[1] ?? m?.[2];
    const port = Number(m?.[3]);
    if (!host || !(port >= 1 && port <= 65535)) {
      return { ok: false, error: `entry "${entry}": "${address}" is not host:port with a port 1-65535` };
    }
    entries.push({ type, host, port });
  }
  if (!entries.length) return { ok: false, error: `answer "${raw}" has no entries` };
  return { ok: true, entries };
}

/** Checks what FindProxyForURL returned (a description from the worker) and parses it. */
function judgeAnswer(value: WorkerValue): PacAnswer {
  if (value.kind !== 'string') {
    return { ok: false, stage: 'answer', error: `FindProxyForURL returned ${value.text}, not a string` };
  }
  if (!value.text.trim()) {
    return { ok: false, stage: 'answer', error: 'FindProxyForURL returned an empty string' };
  }
  const parsed = parsePacAnswer(value.text);
  return parsed.ok
    ? { ok: true, raw: value.text, entries: parsed.entries }
    : { ok: false, stage: 'answer', error: parsed.error };
}

type Fetched = { ok: true; body: Buffer } | { ok: false; error: string };

async function readPacFile(file: string): Promise<Fetched> {
  try {
    return { ok: true, body: await readFile(file) };
  } catch (err) {
    return { ok: false, error: errorMessage(err) };
  }
}

/**
 * GET over http(s) to the address the lab's resolver gives for the URL's host, with that name in Host
 * (and in SNI and the certificate check for https). Only a 2xx answer counts; redirects are not followed.
 */
export function fetchPacText(
  url: string,
  env: PacEnvironment,
  o: { fetchDeadlineMs: number; ca?: string[] },
): Promise<Fetched> {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return Promise.resolve({ ok: false, error: `"${url}" is not a URL` });
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') {
    return Promise.resolve({ ok: false, error: `${u.protocol} is not fetched (http: or https: only)` });
  }
  const secure = u.protocol === 'https:';
  const name = u.hostname.replace(/^\[(.*)\]$/, '$1');
  const address = isIP(name) ? name : env.resolve(name);
  if (!address) return Promise.resolve({ ok: false, error: `${name} does not resolve` });
  const options: https.RequestOptions = {
    host: address,
    port: Number(u.port) || (secure ? 443 : 80),
    path: `${u.pathname}${u.search}`,
    method: 'GET',
    agent: false,
    headers: { Host: u.host, Accept: 'application/x-ns-proxy-autoconfig, */*', Connection: 'close' },
    ...(secure && !isIP(name) ? { servername: name } : {}),
    ...(secure && o.ca ? { ca: o.ca } : {}),
  };
  return new Promise((resolve) => {
    let settled = false;
    const req = (secure ? https : http).request(options);
    const done = (r: Fetched) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      req.destroy();
      resolve(r);
    };
    const timer = setTimeout(
      () => done({ ok: false, error: `no answer within ${o.fetchDeadlineMs} ms (fetchDeadlineMs)` }),
      o.fetchDeadlineMs,
    );
    req.on('error', (err) => done({ ok: false, error: errorMessage(err) }));
    req.on('response', (res) => {
      const status = res.statusCode ?? 0;
      if (status < 200 || status > 299) {
        const statusLine = `HTTP/${res.httpVersion} ${status}${res.statusMessage ? ` ${res.statusMessage}` : ''}`;
        const location = res.headers.location ? ` (Location: ${res.headers.location}; not followed)` : '';
        done({ ok: false, error: `answered "${statusLine}"${location}` });
        return;
      }
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => done({ ok: true, body: Buffer.concat(chunks) }));
      res.on('error', (err) => done({ ok: false, error: errorMessage(err) }));
    });
    req.end();
  });
}

interface Script {
  text: string;
  filename: string;
  myIp: string;
  evalDeadlineMs: number;
}

/** What FindProxyForURL returned: its kind, and the string itself or a short description. */
interface WorkerValue {
  kind: string;
  text: string;
}

type FromWorker =
  | { type: 'booted' }
  | { type: 'loaded'; ok: true }
  | { type: 'loaded'; ok: false; error: string }
  | { type: 'boot-failed'; error: string }
  | { type: 'resolve'; id: number; host: string }
  | { type: 'answer'; id: number; ok: true; value: WorkerValue }
  | { type: 'answer'; id: number; ok: false; error: string; fatal: boolean };

type Answered = Extract<FromWorker, { type: 'answer' }>;
/** A call in flight: its answer, or our own failure (which rejects instead of answering). */
interface Waiting {
  answered(m: Answered): void;
  broke(err: HarnessError): void;
}
type Loaded = { ok: true } | { ok: false; error: string; harness?: true };

/**
 * The worker's program, plain JavaScript run with `eval` so that it needs no TypeScript loader (the
 * tests run this file through one, the package runs the compiled dist/). It loads the engine, loads
 * the PAC with the sandbox overrides, and answers `find` messages; name lookups ask the main thread.
 */
const WORKER_SOURCE = `
const { parentPort, workerData: d } = require('node:worker_threads');
const { isIPv4 } = require('node:net');
const asked = new Map();
let nextAsk = 0;
function ask(host) {
  return new Promise((resolve) => {
    const id = ++nextAsk;
    asked.set(id, resolve);
    parentPort.postMessage({ type: 'resolve', id, host });
  });
}
async function resolve(host) {
  const name = String(host);
  if (isIPv4(name)) return name;
  const address = await ask(name);
  return typeof address === 'string' && isIPv4(address) ? address : null;
}
function ipv4(s) {
  const m = /^(\\d{1,3})\\.(\\d{1,3})\\.(\\d{1,3})\\.(\\d{1,3})$/.exec(String(s));
  if (!m) return undefined;
  const b = m.slice(1).map(Number);
  return b.some((x) => x > 255) ? undefined : ((b[0] << 24) | (b[1] << 16) | (b[2] << 8) | b[3]) >>> 0;
}
const sandbox = {
  alert: async () => undefined,
  dnsResolve: async (host) => resolve(host),
  isResolvable: async (host) => (await resolve(host)) !== null,
  isInNet: async (host, pattern, mask) => {
    const address = await resolve(host);
    const [a, p, m] = [address, pattern, mask].map(ipv4);
    if (a === undefined || p === undefined || m === undefined) return false;
    return ((a & m) >>> 0) === ((p & m) >>> 0);
  },
  myIpAddress: async () => d.myIp,
};
function firstLine(e) {
  let text = String(e);
  if (e && typeof e === 'object' && 'message' in e) {
    // esprima's parse errors are plain Errors carrying a line number: they are syntax errors.
    const parse = 'lineNumber' in e && 'description' in e;
    const name = parse ? 'SyntaxError' : typeof e.name === 'string' && e.name ? e.name : 'Error';
    text = String(e.message).startsWith(name) ? String(e.message) : name + ': ' + e.message;
  }
  return text.split('\\n')[0];
}
function describe(v) {
  if (typeof v === 'string') return { kind: 'string', text: v };
  if (v === null) return { kind: 'null', text: 'null' };
  if (typeof v === 'number' || typeof v === 'boolean') return { kind: typeof v, text: typeof v + ' ' + String(v) };
  if (Array.isArray(v)) return { kind: 'array', text: 'an array' };
  return { kind: typeof v, text: typeof v === 'object' ? 'an object' : typeof v };
}
let findProxy;
parentPort.on('message', async (m) => {
  if (m.type === 'resolved') {
    const r = asked.get(m.id);
    asked.delete(m.id);
    if (r) r(m.address);
    return;
  }
  if (m.type !== 'find') return;
  try {
    const value = await findProxy(m.url, m.host);
    parentPort.postMessage({ type: 'answer', id: m.id, ok: true, value: describe(value) });
  } catch (e) {
    const fatal = e instanceof WebAssembly.RuntimeError;
    parentPort.postMessage({ type: 'answer', id: m.id, ok: false, error: firstLine(e), fatal });
  }
});
(async () => {
  const [{ QuickJS, MAX_STACK_SIZE }, { createPacResolver }] = await Promise.all([
    import(d.quickjsUrl),
    import(d.pacResolverUrl),
  ]);
  // Without a stack guard, deep recursion overruns the WebAssembly stack (a trap that breaks the VM).
  const qjs = await QuickJS.create({ wasm: d.wasm, memoryLimit: d.memoryLimit, maxStackSize: MAX_STACK_SIZE });
  parentPort.postMessage({ type: 'booted' });
  try {
    findProxy = createPacResolver(qjs, d.text, { filename: d.filename, sandbox });
  } catch (e) {
    parentPort.postMessage({ type: 'loaded', ok: false, error: firstLine(e) });
    return;
  }
  parentPort.postMessage({ type: 'loaded', ok: true });
})().catch((e) => parentPort.postMessage({ type: 'boot-failed', error: firstLine(e) }));
`;

/** The compiled quickjs.wasm, shared by every worker (@types/node 20 has no WebAssembly types). */
type WasmModule = object;
let wasmModule: Promise<WasmModule> | undefined;

function compiledWasm(): Promise<WasmModule> {
  const api = (globalThis as unknown as { WebAssembly: { compile(b: Uint8Array): Promise<WasmModule> } })
    .WebAssembly;
  wasmModule ??= readFile(new URL(import.meta.resolve('quickjs-wasi/quickjs.wasm'))).then((b) =>
    api.compile(b),
  );
  return wasmModule;
}

/** One worker with one QuickJS VM holding one loaded PAC. */
class Engine {
  private readonly waiting = new Map<number, Waiting>();
  private nextId = 0;
  private stopped = false;
  /** Hears the worker's load messages (booted, loaded, boot-failed) while start() waits for them. */
  private loading: ((m: FromWorker) => void) | undefined;

  private constructor(
    private readonly worker: Worker,
    private readonly env: PacEnvironment,
  ) {
    worker.on('message', (m: FromWorker) => {
      if (m.type === 'resolve') {
        let address: string | undefined;
        try {
          address = this.env.resolve(m.host);
        } catch (err) {
          return this.fault(new HarnessError(`the lab resolver failed on ${m.host}: ${errorMessage(err)}`));
        }
        worker.postMessage({ type: 'resolved', id: m.id, address: address ?? null });
      } else if (m.type === 'answer') {
        const w = this.waiting.get(m.id);
        this.waiting.delete(m.id);
        w?.answered(m);
      } else {
        this.loading?.(m);
      }
    });
    worker.on('exit', () => this.fail('its worker exited'));
    worker.on('error', (err) => this.fail(`its worker crashed: ${errorMessage(err)}`));
    // After the listeners: adding a 'message' listener refs the worker again.
    worker.unref();
  }

  /** Boots a worker and loads the script into it; the script's top level runs under evalDeadlineMs. */
  static async start(
    script: Script,
    env: PacEnvironment,
  ): Promise<{ ok: true; engine: Engine } | { ok: false; error: string }> {
    const worker = new Worker(WORKER_SOURCE, {
      eval: true,
      // The worker runs plain JavaScript: no TypeScript or test loaders of the parent are needed there.
      execArgv: [],
      workerData: {
        wasm: await compiledWasm(),
        quickjsUrl: import.meta.resolve('quickjs-wasi'),
        pacResolverUrl: import.meta.resolve('pac-resolver'),
        memoryLimit: MEMORY_LIMIT,
        text: script.text,
        filename: script.filename,
        myIp: script.myIp,
      },
    });
    const engine = new Engine(worker, env);
    const loaded = await new Promise<Loaded>((resolve) => {
      const finish = (r: Loaded) => {
        clearTimeout(timer);
        engine.loading = undefined;
        worker.off('exit', onExit);
        worker.off('error', onError);
        resolve(r);
      };
      const onMessage = (m: FromWorker) => {
        if (m.type === 'booted') {
          // The engine is up: from here on the clock is the script's own top level.
          clearTimeout(timer);
          timer = setTimeout(() => {
            const error = `the script's top level did not finish within ${script.evalDeadlineMs} ms (evalDeadlineMs)`;
            finish({ ok: false, error });
          }, script.evalDeadlineMs);
        } else if (m.type === 'loaded') {
          finish(m.ok ? { ok: true } : { ok: false, error: loadError(m.error) });
        } else if (m.type === 'boot-failed') {
          finish({ ok: false, error: `the PAC engine did not start: ${m.error}`, harness: true });
        }
      };
      const onError = (err: Error) =>
        finish({
          ok: false,
          error: `the PAC engine crashed while loading: ${errorMessage(err)}`,
          harness: true,
        });
      const onExit = (code: number) =>
        finish({ ok: false, error: `the PAC engine exited (code ${code}) while loading`, harness: true });
      let timer = setTimeout(() => {
        finish({
          ok: false,
          error: `the PAC engine did not start within ${BOOT_DEADLINE_MS} ms`,
          harness: true,
        });
      }, BOOT_DEADLINE_MS);
      engine.loading = onMessage;
      worker.once('exit', onExit);
      worker.once('error', onError);
    });
    if (loaded.ok) return { ok: true, engine };
    await engine.stop();
    if (loaded.harness) throw new HarnessError(loaded.error);
    return { ok: false, error: loaded.error };
  }

  get alive(): boolean {
    return !this.stopped;
  }

  /** One call; past the deadline the worker is terminated (its loop cannot be interrupted otherwise). */
  find(url: string, host: string, deadlineMs: number): Promise<PacAnswer> {
    const id = ++this.nextId;
    return new Promise<PacAnswer>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting.delete(id);
        void this.stop();
        resolve({
          ok: false,
          stage: 'deadline',
          error: `FindProxyForURL gave no answer within ${deadlineMs} ms (deadlineMs)`,
        });
      }, deadlineMs);
      const answered = (m: Answered) => {
        clearTimeout(timer);
        if (m.ok) return resolve(judgeAnswer(m.value));
        if (!m.fatal) {
          return resolve({ ok: false, stage: 'throws', error: `FindProxyForURL threw ${m.error}` });
        }
        void this.stop();
        resolve({
          ok: false,
          stage: 'throws',
          error: `the PAC engine broke under FindProxyForURL: ${m.error}`,
        });
      };
      const broke = (err: HarnessError) => {
        clearTimeout(timer);
        reject(err);
      };
      this.waiting.set(id, { answered, broke });
      this.worker.postMessage({ type: 'find', id, url, host });
    });
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    await this.worker.terminate();
  }

  /** Ends every call still waiting (the worker exited or crashed under them). */
  private fail(error: string): void {
    this.stopped = true;
    for (const [id, w] of this.waiting) {
      this.waiting.delete(id);
      w.answered({ type: 'answer', id, ok: false, error, fatal: true });
    }
  }

  /** Our own side broke (the lab resolver threw): the engine stops and every waiting call rejects. */
  private fault(err: HarnessError): void {
    void this.stop();
    for (const [id, w] of this.waiting) {
      this.waiting.delete(id);
      w.broke(err);
    }
    this.loading?.({ type: 'boot-failed', error: err.message });
  }
}

/** The engine's load errors, said the way a PAC author reads them. */
function loadError(message: string): string {
  if (/FindProxyForURL is not defined|Expected a "function" named `FindProxyForURL`/.test(message)) {
    return `the script defines no FindProxyForURL function (${message})`;
  }
  return message;
}

class WorkerPac implements Pac {
  private queue: Promise<unknown> = Promise.resolve();
  private closed = false;

  constructor(
    readonly source: string,
    private readonly script: Script,
    private readonly env: PacEnvironment,
    private engine: Engine | undefined,
  ) {}

  find(url: string, host: string, o: { deadlineMs: number }): Promise<PacAnswer> {
    const run = this.queue.then(() => this.run(url, host, o.deadlineMs));
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async run(url: string, host: string, deadlineMs: number): Promise<PacAnswer> {
    if (this.closed) throw new HarnessError(`PAC ${this.source} used after close()`);
    if (!URL.canParse(url)) throw new HarnessError(`FindProxyForURL asked for "${url}", which is not a URL`);
    if (!this.engine?.alive) {
      // The last call ran past its deadline (or the VM broke): the script is loaded into a fresh engine.
      const started = await Engine.start(this.script, this.env);
      if (!started.ok) {
        return { ok: false, stage: 'throws', error: `reloading the PAC failed: ${started.error}` };
      }
      this.engine = started.engine;
    }
    return this.engine.find(url, host, deadlineMs);
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.engine?.stop();
  }
}
