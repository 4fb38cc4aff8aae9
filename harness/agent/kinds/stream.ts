/**
 * `tls-stream` and `tcp-stream`: agents whose protocol is their own binary framing on a
 * dedicated port (Kaspersky Network Agent on 13000/14000/17000/13292/13293, ESET Management Agent
 * on 2222). proxycheck does not speak those proprietary protocols; it replays what a proxy can
 * see of them: a CONNECT to the port, TLS where the vendor says TLS, then length-prefixed binary
 * frames both ways, echoed by the lab origin and compared by SHA-256.
 */
import type { Socket } from 'node:net';
import { sha256, sourceBytes } from '../../lab/lab.ts';
import { openChannel } from '../channel.ts';
import { type ExchangeKind, type KindContext, type KindVerdicts, since } from './types.ts';

function streamKind(id: 'tls-stream' | 'tcp-stream'): ExchangeKind {
  const tls = id === 'tls-stream';
  return {
    id,
    options: { messages: { $ref: '#/$defs/messages' }, messageBytes: { $ref: '#/$defs/messageBytes' } },
    checks: () => (tls ? ['connect', 'tls-interception', 'pinning', 'payload'] : ['connect', 'payload']),
    lab: (x) => [{ port: x.port, transport: tls ? 'tls' : 'tcp', service: 'echo' }],
    run: (ctx) => runStream(ctx, tls),
  };
}

export const tlsStreamKind = streamKind('tls-stream');
export const tcpStreamKind = streamKind('tcp-stream');

/** Frame i: 4-byte big-endian length + deterministic bytes. */
function frame(i: number, bytes: number): Buffer {
  const body = sourceBytes(bytes + i).subarray(i);
  const head = Buffer.alloc(4);
  head.writeUInt32BE(body.length);
  return Buffer.concat([head, body]);
}

/** A read that ended early, with what did arrive (an HTTP error page from the proxy, say). */
class ShortRead extends Error {
  constructor(
    message: string,
    readonly partial: Buffer,
  ) {
    super(message);
  }
}

/** Reads exactly `n` bytes or rejects (ShortRead) at the deadline / on close. */
function readExactly(socket: Socket, n: number, ms: number, what: string): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let have = 0;
    const cleanup = () => {
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('close', onClose);
      socket.off('error', onError);
    };
    const timer = setTimeout(() => {
      cleanup();
      reject(new ShortRead(`${what}: ${have} of ${n} bytes echoed within ${ms} ms`, Buffer.concat(chunks)));
    }, ms);
    const onData = (c: Buffer) => {
      chunks.push(c);
      have += c.length;
      if (have >= n) {
        cleanup();
        socket.pause();
        const all = Buffer.concat(chunks);
        if (all.length > n) socket.unshift(all.subarray(n));
        resolve(all.subarray(0, n));
      }
    };
    const onClose = () => {
      cleanup();
      reject(new ShortRead(`${what}: the tunnel closed after ${have} of ${n} bytes`, Buffer.concat(chunks)));
    };
    const onError = (err: Error) => {
      cleanup();
      reject(new ShortRead(`${what}: ${err.message}`, Buffer.concat(chunks)));
    };
    socket.on('data', onData);
    socket.once('close', onClose);
    socket.once('error', onError);
    socket.resume();
  });
}

async function runStream(ctx: KindContext, tls: boolean): Promise<KindVerdicts> {
  const out: KindVerdicts = new Map();
  const channel = await openChannel(ctx, out, { dependents: ['payload'], tls });
  if (!channel) return out;
  const socket = channel.socket;
  const n = ctx.exchange.messages ?? 3;
  const size = ctx.exchange.messageBytes ?? 4096;
  const steps: Array<Record<string, unknown>> = [];
  const t0 = performance.now();
  try {
    for (let i = 0; i < n; i++) {
      const f = frame(i, size);
      socket.write(f);
      const back = await readExactly(socket, f.length, ctx.timeouts.requestMs, `frame ${i + 1} of ${n}`);
      const sent = sha256(f);
      const got = sha256(back);
      steps.push({ frame: i + 1, bytes: f.length, sentSha256: sent, echoedSha256: got });
      if (sent !== got) {
        out.set('payload', {
          outcome: 'fail',
          message: `frame ${i + 1}: echoed SHA-256 ${got.slice(0, 16)}…, not ${sent.slice(0, 16)}…`,
          evidence: { steps },
          durationMs: since(t0),
        });
        return out;
      }
    }
    out.set('payload', {
      outcome: 'pass',
      message: `${n} binary frames of ${size} bytes through the ${tls ? 'TLS session' : 'raw tunnel'}, echoed byte-identical`,
      evidence: { steps },
      durationMs: since(t0),
    });
  } catch (err) {
    const partial = err instanceof ShortRead ? err.partial : Buffer.alloc(0);
    // What came back instead of the echo: often the proxy's own HTTP answer to bytes it could not parse.
    const line = /^HTTP\/1\.[01] \d{3}[^\r\n]*/.exec(partial.toString('latin1'))?.[0];
    out.set('payload', {
      outcome: 'fail',
      message: `${(err as Error).message}${line ? `; received "${line}" instead of the echo` : ''}`,
      evidence: {
        steps,
        ...(partial.length ? { receivedInstead: partial.subarray(0, 512).toString('latin1') } : {}),
      },
      durationMs: since(t0),
    });
  } finally {
    socket.destroy();
  }
  return out;
}

export type { KindContext };
