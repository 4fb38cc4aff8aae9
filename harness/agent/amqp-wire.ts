/**
 * The agent's AMQP 1.0 wire helpers for the `amqp-ws` kind (agent/kinds/amqp-ws.ts): the protocol
 * headers, AmqpTap (reads one direction of the byte stream into protocol headers and frame
 * performatives, the kind's protocol evidence) and rheaTransport (rhea's socket interface over an
 * open `ws` WebSocket, both directions tapped).
 */
import type WebSocket from 'ws';

/** The AMQP 1.0 protocol headers: the SASL layer's (sent first), then AMQP proper's. */
export const SASL_HEADER = Buffer.from('AMQP\x03\x01\x00\x00', 'latin1');
export const AMQP_HEADER = Buffer.from('AMQP\x00\x01\x00\x00', 'latin1');

const PERFORMATIVES: Record<number, string> = {
  16: 'open',
  17: 'begin',
  18: 'attach',
  19: 'flow',
  20: 'transfer',
  21: 'disposition',
  22: 'detach',
  23: 'end',
  24: 'close',
  64: 'sasl-mechanisms',
  65: 'sasl-init',
  66: 'sasl-challenge',
  67: 'sasl-response',
  68: 'sasl-outcome',
};

const MAX_EVENTS = 24;
const FIRST_BYTES = 64;

/** Printable ASCII kept, every other byte as \xNN (how AMQP protocol headers are written). */
export function escaped(bytes: Buffer): string {
  return [...bytes]
    .map((b) => (b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : `\\x${b.toString(16).padStart(2, '0')}`))
    .join('');
}

/**
 * Reads one direction of an AMQP byte stream as the agent sent or received it: protocol headers
 * and frame performatives, in order (after a SASL outcome a new protocol header follows).
 */
export class AmqpTap {
  readonly events: string[] = [];
  private first = Buffer.alloc(0);
  private buf = Buffer.alloc(0);
  private expectHeader = true;
  private broken = false;
  bytes = 0;

  feed(chunk: Buffer): void {
    this.bytes += chunk.length;
    if (this.first.length < FIRST_BYTES)
      this.first = Buffer.concat([this.first, chunk.subarray(0, FIRST_BYTES - this.first.length)]);
    if (this.broken || this.events.length >= MAX_EVENTS) return;
    this.buf = Buffer.concat([this.buf, chunk]);
    while (!this.broken && this.events.length < MAX_EVENTS) {
      if (this.expectHeader) {
        if (this.buf.length < 8) return;
        const h = this.buf.subarray(0, 8);
        if (h.subarray(0, 4).toString('latin1') !== 'AMQP') {
          this.events.push(`not an AMQP protocol header: ${h.toString('hex')}`);
          this.broken = true;
          return;
        }
        const id = h[4];
        const name = id === 3 ? 'SASL' : id === 0 ? 'AMQP' : id === 2 ? 'TLS' : `protocol ${id}`;
        this.events.push(`header ${name} ${h[5]}.${h[6]}.${h[7]}`);
        this.buf = this.buf.subarray(8);
        this.expectHeader = false;
        continue;
      }
      if (this.buf.length < 8) return;
      // A protocol header where a frame would start: the client's AMQP header after its SASL
      // exchange (it sends no sasl-outcome to key on). A frame of 0x414d5150 bytes is not plausible.
      if (this.buf.subarray(0, 4).toString('latin1') === 'AMQP') {
        this.expectHeader = true;
        continue;
      }
      const size = this.buf.readUInt32BE(0);
      if (size < 8) {
        this.events.push(`bad frame size ${size}`);
        this.broken = true;
        return;
      }
      if (this.buf.length < size) return;
      const frame = this.buf.subarray(0, size);
      this.buf = this.buf.subarray(size);
      const doff = (frame[4] ?? 2) * 4;
      const body = frame.subarray(doff);
      if (!body.length) {
        this.events.push('empty frame (heartbeat)');
        continue;
      }
      let code: number | undefined;
      if (body[0] === 0x00 && body[1] === 0x53) code = body[2];
      else if (body[0] === 0x00 && body[1] === 0x80 && body.length >= 10)
        code = Number(body.readBigUInt64BE(2));
      const name =
        code !== undefined ? (PERFORMATIVES[code] ?? `performative 0x${code.toString(16)}`) : 'frame';
      this.events.push(frame[5] === 1 ? `${name}` : `${name} (channel ${frame.readUInt16BE(6)})`);
      if (code === 0x44) this.expectHeader = true;
    }
  }

  firstBytes(): string {
    return this.first.toString('hex');
  }

  /** First bytes, as the protocol headers are written (`AMQP\x03\x01\x00\x00...`). */
  firstBytesText(): string {
    return escaped(this.first);
  }
}

/** rhea's socket interface over an open `ws` WebSocket, with both directions tapped. */
export function rheaTransport(ws: WebSocket, url: string, up: AmqpTap, down: AmqpTap) {
  return {
    write(data: Buffer) {
      up.feed(Buffer.from(data));
      if (ws.readyState === ws.OPEN) ws.send(data, { binary: true });
    },
    end() {
      if (ws.readyState === ws.OPEN) ws.close(1000);
    },
    on(event: string, handler: (arg?: unknown) => void) {
      if (event === 'data')
        ws.on('message', (d: Buffer) => {
          down.feed(d);
          handler(d);
        });
      else if (event === 'end') ws.on('close', () => handler());
      else if (event === 'error') ws.on('error', (err) => handler(err));
    },
    get_id_string: () => url,
  };
}
