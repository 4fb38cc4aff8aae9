/**
 * A WebSocket client (the `ws` library) over a socket the agent already has: the verified TLS
 * session inside a CONNECT tunnel, or the direct route. The opening handshake is recorded as the
 * agent saw it (status line, headers, the subprotocol the server chose) and has a deadline.
 */
import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import WebSocket from 'ws';
import { errorMessage } from '../errors.ts';

export interface UpgradeAnswer {
  statusLine: string;
  statusCode: number;
  headers: Array<[string, string]>;
  /** The subprotocol the server selected ('' when none). */
  subprotocol: string;
  /** First bytes of the body of a refusal, if any. */
  body?: string;
}

export type WsOpenResult =
  | { ok: true; ws: WebSocket; answer: UpgradeAnswer; ms: number }
  | { ok: false; error: string; answer?: UpgradeAnswer; ms: number };

export interface WsOpenOptions {
  url: string;
  protocols: string[];
  /** Deadline for the 101 (and the handshake checks after it). */
  deadlineMs: number;
  /** Named in the deadline's error, e.g. `timeouts.answerMs`. */
  deadlineName: string;
  maxPayload?: number;
  /** Extra handshake headers (User-Agent, ...). */
  headers?: Record<string, string>;
}

function pairs(raw: string[]): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  for (let i = 0; i + 1 < raw.length; i += 2) out.push([raw[i] ?? '', raw[i + 1] ?? '']);
  return out;
}

/** Runs the WebSocket opening handshake over `socket`. Never throws; on failure the socket is destroyed. */
export function openWebSocket(socket: Socket | TLSSocket, opts: WsOpenOptions): Promise<WsOpenResult> {
  return new Promise((resolve) => {
    const t0 = performance.now();
    let answer: UpgradeAnswer | undefined;
    let settled = false;
    const ws = new WebSocket(opts.url, opts.protocols, {
      createConnection: (() => socket) as never,
      perMessageDeflate: false,
      maxPayload: opts.maxPayload ?? 64 * 1024 * 1024,
      ...(opts.headers ? { headers: opts.headers } : {}),
    });
    const timer = setTimeout(
      () =>
        fail(
          `WebSocket upgrade ${opts.url}: no 101 answer within ${opts.deadlineMs} ms (${opts.deadlineName})`,
        ),
      opts.deadlineMs,
    );
    function done(r: WsOpenResult): void {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve(r);
    }
    function fail(error: string): void {
      ws.removeAllListeners();
      ws.on('error', () => {});
      ws.terminate();
      socket.destroy();
      done({ ok: false, error, ...(answer ? { answer } : {}), ms: Math.round(performance.now() - t0) });
    }
    ws.on('upgrade', (res) => {
      answer = {
        statusLine: `HTTP/${res.httpVersion} ${res.statusCode} ${res.statusMessage ?? ''}`.trimEnd(),
        statusCode: res.statusCode ?? 0,
        headers: pairs(res.rawHeaders),
        subprotocol: String(res.headers['sec-websocket-protocol'] ?? ''),
      };
    });
    ws.on('unexpected-response', (req, res) => {
      answer = {
        statusLine: `HTTP/${res.httpVersion} ${res.statusCode} ${res.statusMessage ?? ''}`.trimEnd(),
        statusCode: res.statusCode ?? 0,
        headers: pairs(res.rawHeaders),
        subprotocol: String(res.headers['sec-websocket-protocol'] ?? ''),
      };
      const chunks: Buffer[] = [];
      let size = 0;
      const finish = () => {
        if (answer && size) answer.body = Buffer.concat(chunks).toString('utf8').slice(0, 512);
        req.destroy();
        fail(`WebSocket upgrade ${opts.url} answered "${answer?.statusLine}", not 101 Switching Protocols`);
      };
      res.on('data', (c: Buffer) => {
        if (size < 2048) chunks.push(c);
        size += c.length;
      });
      res.on('end', finish);
      res.on('error', finish);
      res.on('close', finish);
    });
    ws.on('error', (err) => fail(`WebSocket upgrade ${opts.url}: ${errorMessage(err)}`));
    ws.on('close', () =>
      fail(`WebSocket upgrade ${opts.url}: connection closed before the handshake completed`),
    );
    ws.once('open', () => {
      ws.removeAllListeners('error');
      ws.removeAllListeners('close');
      ws.removeAllListeners('upgrade');
      ws.removeAllListeners('unexpected-response');
      const a = answer ?? { statusLine: '', statusCode: 101, headers: [], subprotocol: ws.protocol };
      a.subprotocol = ws.protocol;
      done({ ok: true, ws, answer: a, ms: Math.round(performance.now() - t0) });
    });
  });
}

/** `name: value` lines of an answer, for evidence. */
export function answerHead(a: UpgradeAnswer): string {
  return [a.statusLine, ...a.headers.map(([k, v]) => `${k}: ${v}`)].join('\r\n');
}
