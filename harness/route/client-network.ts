/**
 * The agent machine's network around its proxy, from a definition's `client` knob: the machine's
 * name service, how "auto detect" finds a route when the configured proxy cannot be reached, and
 * whether the firewall lets the machine go DIRECT.
 *
 * Auto detect as Windows does it: `wpad` resolves `wpad.<dns suffix>` and fetches
 * `http://wpad.<dns suffix>/wpad.dat`; `pac` fetches the script at a URL; the script runs in a
 * real PAC engine (pac.ts, pac-resolver) and its answer is a list of routes tried in order. When
 * WPAD finds no host, auto detect finds no script and the machine goes DIRECT (what WinHTTP does);
 * a script that cannot be fetched, throws or does not parse is an error, never DIRECT.
 *
 * The scripts a definition gives (`pacFile`) are served by this module on the lab address of their
 * host (harness/lab/addresses.ts), so only loopback is ever dialled; the name service knows the
 * lab hosts and those, nothing else (never the operating system's resolver).
 */
import http from 'node:http';
import { errorMessage } from '../errors.ts';
import { labAddress } from '../lab/addresses.ts';
import { type ClientNetworkKnob, DEFAULT_DNS_SUFFIX } from '../proxies/definition.ts';
import { loadPac, type Pac, type PacEntry, type PacLoad } from './pac.ts';

/** How long the agent waits for its proxy script, and for the script to answer. */
export const PAC_FETCH_DEADLINE_MS = 5_000;
export const PAC_RUN_DEADLINE_MS = 2_000;

export type Discovery =
  | {
      ok: true;
      method: 'none' | 'wpad' | 'pac';
      /** Where the script came from, when there was one. */
      source?: string;
      /** The script's answer as it said it. */
      answer?: string;
      entries: PacEntry[];
      /** What auto detect did, in words, for evidence. */
      note: string;
      ms: number;
    }
  | {
      ok: false;
      method: 'wpad' | 'pac';
      source: string;
      stage: 'fetch' | 'syntax' | 'throws' | 'deadline' | 'answer';
      error: string;
      ms: number;
    };

export interface ClientNetwork {
  autoDetect: 'none' | 'wpad' | 'pac';
  direct: 'allowed' | 'blocked';
  /** The machine's name service: an IPv4 address, or undefined when the name does not resolve. */
  resolve(host: string): string | undefined;
  /** What auto detect answers for a URL the agent is about to open. */
  discover(url: string, host: string): Promise<Discovery>;
  describe(): string;
  /** The proxies the script names that were started with it: host:port → definition id. */
  proxyNames?: Map<string, string>;
  /** The proxy scripts this network serves: URL and the loopback address of its host. */
  served: Array<{ url: string; host: string; address: string }>;
  stop(): Promise<void>;
}

export interface ClientNetworkOptions {
  /** The lab's name service (lab hosts). */
  resolve: (host: string) => string | undefined;
  /** The lab net, for the addresses of the hosts serving scripts. */
  net: number;
  /** The script the definition gives, its placeholders already filled in. */
  pacText?: string;
  /** The script's file, for evidence. */
  pacName?: string;
  /** The proxies the script names, started with it: host:port → definition id. */
  proxyNames?: Map<string, string>;
}

const since = (t0: number) => Math.round(performance.now() - t0);

/** What auto detect answers on a machine with no proxy script source. */
const NO_SCRIPT = {
  ok: true,
  method: 'none',
  entries: [{ type: 'DIRECT' }],
  note: 'auto detect has no proxy script source on this machine: DIRECT',
} as const satisfies Omit<Extract<Discovery, { ok: true }>, 'ms'>;

/** The URL an agent hands its proxy script for an exchange: https (or http, forwarded), the port when not the default. */
export function scriptUrlFor(host: string, port: number, forwarded: boolean): string {
  const scheme = forwarded ? 'http' : 'https';
  return `${scheme}://${host}${port === (forwarded ? 80 : 443) ? '' : `:${port}`}/`;
}

/** Starts what the knob needs (a server for its script) and returns the machine's network. */
export async function startClientNetwork(
  knob: ClientNetworkKnob | undefined,
  o: ClientNetworkOptions,
): Promise<ClientNetwork> {
  const autoDetect = knob?.autoDetect ?? 'none';
  const direct = knob?.direct ?? 'allowed';
  const suffix = knob?.dnsSuffix ?? DEFAULT_DNS_SUFFIX;
  const served = new Map<string, string>();
  const scripts: ClientNetwork['served'] = [];
  let server: http.Server | undefined;
  let scriptUrl: string | undefined;
  if (autoDetect === 'wpad') scriptUrl = `http://wpad.${suffix}/wpad.dat`;
  if (autoDetect === 'pac') scriptUrl = knob?.pacUrl;
  if (scriptUrl && o.pacText !== undefined) {
    const url = new URL(scriptUrl);
    const address = labAddress(url.hostname, o.net);
    const port = Number(url.port || 80);
    const text = o.pacText;
    const path = url.pathname;
    server = http.createServer((req, res) => {
      const ok = req.method === 'GET' && (req.url ?? '').split('?')[0] === path;
      res.writeHead(ok ? 200 : 404, {
        'content-type': ok ? 'application/x-ns-proxy-autoconfig' : 'text/plain',
        connection: 'close',
      });
      res.end(ok ? text : 'not found\n');
    });
    const s = server;
    await new Promise<void>((resolve, reject) => {
      s.once('error', (err) =>
        reject(new Error(`serving ${scriptUrl} on ${address}:${port}: ${errorMessage(err)}`)),
      );
      s.listen(port, address, () => resolve());
    });
    served.set(url.hostname.toLowerCase(), address);
    scripts.push({ url: scriptUrl, host: url.hostname.toLowerCase(), address });
  }
  const resolve = (host: string) => served.get(host.toLowerCase()) ?? o.resolve(host);
  let loading: Promise<PacLoad> | undefined;
  const load = (url: string) => {
    loading ??= loadPac({ url }, { resolve }, { fetchDeadlineMs: PAC_FETCH_DEADLINE_MS });
    return loading;
  };

  async function discover(target: string, host: string): Promise<Discovery> {
    const t0 = performance.now();
    if (autoDetect === 'none' || !scriptUrl) return { ...NO_SCRIPT, ms: since(t0) };
    if (autoDetect === 'wpad') {
      const wpadHost = new URL(scriptUrl).hostname;
      if (!resolve(wpadHost))
        return {
          ok: true,
          method: 'wpad',
          entries: [{ type: 'DIRECT' }],
          note: `WPAD found no proxy script (${wpadHost} does not resolve): DIRECT`,
          ms: since(t0),
        };
    }
    const method = autoDetect;
    const source = scriptUrl;
    /** The script could not be used: its stage and error, never DIRECT. */
    const failed = (f: { stage: Extract<Discovery, { ok: false }>['stage']; error: string }): Discovery => ({
      ok: false,
      method,
      source,
      stage: f.stage,
      error: f.error,
      ms: since(t0),
    });
    const loaded = await load(scriptUrl);
    if (!loaded.ok) return failed(loaded);
    const pac: Pac = loaded.pac;
    const answer = await pac.find(target, host, { deadlineMs: PAC_RUN_DEADLINE_MS });
    if (!answer.ok) return failed(answer);
    return {
      ok: true,
      method,
      source: scriptUrl,
      answer: answer.raw,
      entries: answer.entries,
      note: `${method === 'wpad' ? 'WPAD' : 'the PAC URL'} gave ${scriptUrl}, which answers "${answer.raw}" for ${host}`,
      ms: since(t0),
    };
  }

  return {
    autoDetect,
    direct,
    resolve,
    discover,
    describe: () =>
      `auto detect ${autoDetect === 'none' ? 'finds no script' : `${autoDetect} (${scriptUrl}${o.pacName ? `, from ${o.pacName}` : ''})`}; DIRECT ${direct}`,
    served: scripts,
    ...(o.proxyNames?.size ? { proxyNames: o.proxyNames } : {}),
    stop: () =>
      new Promise<void>((r) => {
        if (!server) return r();
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

/** A machine with no auto-detect source that may go DIRECT, naming hosts with `resolve`. */
export function plainClientNetwork(resolve: (host: string) => string | undefined): ClientNetwork {
  return {
    autoDetect: 'none',
    direct: 'allowed',
    resolve,
    discover: async () => ({ ...NO_SCRIPT, ms: 0 }),
    describe: () => 'auto detect finds no script; DIRECT allowed',
    served: [],
    stop: async () => {},
  };
}
