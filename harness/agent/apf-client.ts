/**
 * The AMT firmware's side of one APF (AMT Port Forwarding) connection, as the `cira` kind plays
 * it over the TLS socket to the CIRA server: it decodes what the server sends (codec shared with
 * the lab server, lab/services/apf-codec.ts), answers the server's keep-alives and keep-alive
 * options itself, keeps a timed log of every message each way for evidence, and lets the kind
 * wait for the next protocol message with a deadline. The kind (agent/kinds/cira.ts) drives the
 * session and judges it.
 */

import { randomBytes } from 'node:crypto';
import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { errorMessage } from '../errors.ts';
import {
  APF_AUTH_SERVICE,
  APF_DISCONNECT,
  APF_PFWD_SERVICE,
  APF_TRIGGER,
  ApfError,
  type ApfMessage,
  decodeApf,
  encodeApf,
  type OriginInfo,
} from '../lab/services/apf-codec.ts';
import { since } from './kinds/types.ts';

interface Closed {
  atMs: number;
  /** `end` (the peer's FIN), `error`, or `agent` (we ended it). */
  how: 'end' | 'error' | 'agent';
  error?: string;
}

/** A step of the APF exchange that went wrong (its message says which and how). */
export class StepError extends Error {}

/** The firmware's side of one APF connection over the TLS socket. */
export class ApfClient {
  private buf = Buffer.alloc(0);
  private readonly queue: ApfMessage[] = [];
  private readonly waiters = new Set<() => void>();
  readonly t0 = performance.now();
  closed: Closed | undefined;
  originInfo: OriginInfo | undefined;
  /** Reason code of the APF DISCONNECT the origin sent, if it sent one. */
  disconnectReason: number | undefined;
  /** Set while waiting for a tcpip-forward answer (REQUEST_SUCCESS then carries the port). */
  expectPort = false;
  onKeepaliveReply: ((cookie: number) => void) | undefined;
  onClosed: (() => void) | undefined;
  readonly log: Array<{ atMs: number; dir: 'sent' | 'received'; message: string }> = [];

  constructor(private readonly socket: Socket | TLSSocket) {
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('end', () => this.close('end'));
    socket.on('error', (err) => this.close('error', errorMessage(err)));
    socket.on('close', () => this.close('end'));
    socket.resume();
  }

  private close(how: Closed['how'], error?: string): void {
    if (!this.closed) this.closed = { atMs: since(this.t0), how, ...(error ? { error } : {}) };
    else if (error && !this.closed.error) this.closed.error = error;
    this.onClosed?.();
    this.wake();
  }

  private wake(): void {
    for (const w of [...this.waiters]) w();
  }

  private onData(chunk: Buffer): void {
    this.buf = Buffer.concat([this.buf, chunk]);
    for (;;) {
      let decoded: ReturnType<typeof decodeApf>;
      try {
        decoded = decodeApf(this.buf, { requestSuccessWithPort: this.expectPort });
      } catch (err) {
        const msg = err instanceof ApfError ? err.message : errorMessage(err);
        this.close('error', `undecodable APF from the origin: ${msg}`);
        this.socket.destroy();
        return;
      }
      if (!decoded) break;
      this.buf = this.buf.subarray(decoded.bytes);
      const m = decoded.message;
      this.log.push({ atMs: since(this.t0), dir: 'received', message: describeApf(m) });
      if (m.type === 'keepalive-request') this.send({ type: 'keepalive-reply', cookie: m.cookie });
      else if (m.type === 'keepalive-options-request') this.send({ ...m, type: 'keepalive-options-reply' });
      else if (m.type === 'origin-info') this.originInfo = m.info;
      else if (m.type === 'disconnect') this.disconnectReason = m.reason;
      else if (m.type === 'keepalive-reply') this.onKeepaliveReply?.(m.cookie);
      else this.queue.push(m);
    }
    this.wake();
  }

  send(m: ApfMessage): void {
    if (this.closed || !this.socket.writable) return;
    this.log.push({ atMs: since(this.t0), dir: 'sent', message: describeApf(m) });
    this.socket.write(encodeApf(m));
  }

  /** Resolves with `test()`'s value once defined; rejects on close or after `ms`, naming `what`. */
  waitUntil<T>(test: () => T | undefined, ms: number, what: string): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const check = () => {
        const v = test();
        if (v !== undefined) return finish(() => resolve(v));
        if (this.closed) {
          const why =
            this.disconnectReason !== undefined
              ? `the origin sent APF DISCONNECT (reason ${this.disconnectReason}) and closed`
              : `the connection closed${this.closed.error ? ` (${this.closed.error})` : ''}`;
          finish(() => reject(new StepError(`${what}: ${why} ${this.closed?.atMs} ms after the handshake`)));
        }
      };
      const timer = setTimeout(
        () => finish(() => reject(new StepError(`${what}: no answer within ${ms} ms`))),
        ms,
      );
      const finish = (f: () => void) => {
        clearTimeout(timer);
        this.waiters.delete(check);
        f();
      };
      this.waiters.add(check);
      check();
    });
  }

  /** The next protocol message of any type (the caller judges it). */
  next(ms: number, what: string): Promise<ApfMessage> {
    return this.waitUntil(() => this.queue.shift(), ms, what);
  }

  /** The next protocol message, which must be of `type`. */
  async expect<K extends ApfMessage['type']>(
    type: K,
    ms: number,
    what: string,
  ): Promise<Extract<ApfMessage, { type: K }>> {
    const m = await this.next(ms, what);
    if (m.type !== type) throw new StepError(`${what}: the origin answered ${describeApf(m)}`);
    return m as Extract<ApfMessage, { type: K }>;
  }

  /** APF DISCONNECT (by application), then close the connection. */
  end(): void {
    this.send({ type: 'disconnect', reason: APF_DISCONNECT.BY_APPLICATION });
    if (!this.closed) this.closed = { atMs: since(this.t0), how: 'agent' };
    this.socket.end();
  }

  /**
   * The firmware's set-up: PROTOCOLVERSION, (the lab's ORIGIN_INFO when mutual TLS is checked),
   * auth and pfwd services, USERAUTH, tcpip-forward. Never throws: a broken step is `protocolError`.
   */
  async setUp(o: { waitForOriginInfo: boolean; answerMs: number; forwardPort: number }): Promise<ApfSetup> {
    const out: ApfSetup = {};
    const { answerMs } = o;
    try {
      this.send({
        type: 'protocol-version',
        major: 1,
        minor: 0,
        triggerReason: APF_TRIGGER.PERIODIC,
        uuid: randomBytes(16),
      });
      out.versionReply = await this.expect('protocol-version', answerMs, 'APF PROTOCOLVERSION reply');
      if (o.waitForOriginInfo) {
        await this.waitUntil(
          () => this.originInfo,
          answerMs,
          "the origin's report of the device certificate it verified (lab ORIGIN_INFO)",
        );
      }
      this.send({ type: 'service-request', service: APF_AUTH_SERVICE });
      await this.expect('service-accept', answerMs, `SERVICE_REQUEST ${APF_AUTH_SERVICE}`);
      this.send({
        type: 'userauth-request',
        username: 'proxycheck',
        service: APF_PFWD_SERVICE,
        method: 'password',
        password: 'lab',
      });
      const auth = await this.next(answerMs, 'USERAUTH_REQUEST');
      if (auth.type !== 'userauth-success')
        throw new StepError(`USERAUTH_REQUEST: the origin answered ${describeApf(auth)}`);
      this.send({ type: 'service-request', service: APF_PFWD_SERVICE });
      await this.expect('service-accept', answerMs, `SERVICE_REQUEST ${APF_PFWD_SERVICE}`);
      this.expectPort = true;
      this.send({
        type: 'global-request',
        name: 'tcpip-forward',
        wantReply: true,
        address: '',
        port: o.forwardPort,
      });
      const fwd = await this.next(answerMs, `GLOBAL_REQUEST tcpip-forward ${o.forwardPort}`);
      this.expectPort = false;
      if (fwd.type !== 'request-success')
        throw new StepError(
          `GLOBAL_REQUEST tcpip-forward ${o.forwardPort}: the origin answered ${describeApf(fwd)}`,
        );
      out.forwardPort = fwd.port;
      if (fwd.port !== o.forwardPort)
        throw new StepError(`tcpip-forward ${o.forwardPort}: the origin bound port ${fwd.port} instead`);
    } catch (err) {
      out.protocolError = errorMessage(err);
    }
    return out;
  }
}

/** One APF message as the evidence and messages name it (`SERVICE_ACCEPT pfwd@amt.intel.com`). */
export function describeApf(m: ApfMessage): string {
  switch (m.type) {
    case 'protocol-version':
      return `PROTOCOLVERSION ${m.major}.${m.minor} (trigger ${m.triggerReason})`;
    case 'service-request':
      return `SERVICE_REQUEST ${m.service}`;
    case 'service-accept':
      return `SERVICE_ACCEPT ${m.service}`;
    case 'userauth-request':
      return `USERAUTH_REQUEST ${m.username} ${m.service} ${m.method}`;
    case 'userauth-failure':
      return `USERAUTH_FAILURE (${m.methods})`;
    case 'userauth-success':
      return 'USERAUTH_SUCCESS';
    case 'global-request':
      return `GLOBAL_REQUEST ${m.name} ${m.address ?? ''}:${m.port ?? ''}`;
    case 'request-success':
      return `REQUEST_SUCCESS${m.port !== undefined ? ` ${m.port}` : ''}`;
    case 'request-failure':
      return 'REQUEST_FAILURE';
    case 'keepalive-request':
      return `KEEPALIVE_REQUEST ${hexCookie(m.cookie)}`;
    case 'keepalive-reply':
      return `KEEPALIVE_REPLY ${hexCookie(m.cookie)}`;
    case 'keepalive-options-request':
      return `KEEPALIVE_OPTIONS_REQUEST ${m.intervalSeconds}s/${m.timeoutSeconds}s`;
    case 'keepalive-options-reply':
      return `KEEPALIVE_OPTIONS_REPLY ${m.intervalSeconds}s/${m.timeoutSeconds}s`;
    case 'disconnect':
      return `DISCONNECT reason ${m.reason}`;
    case 'origin-info':
      return `ORIGIN_INFO (lab) ${JSON.stringify(m.info)}`;
  }
}

/** A 4-byte keep-alive cookie as written in evidence (`0x0000abcd`). */
export const hexCookie = (n: number) => `0x${n.toString(16).padStart(8, '0')}`;

export interface ApfSetup {
  /** Why the set-up broke, if it did. */
  protocolError?: string;
  versionReply?: Extract<ApfMessage, { type: 'protocol-version' }>;
  /** The port the origin bound for tcpip-forward. */
  forwardPort?: number;
}
