/**
 * The flow half of the relay (relay.ts): what a client connection asked the proxy and what the
 * proxy answered, read from copies of the relayed bytes (never holding them back).
 */
import type { Flow } from './relay.ts';

export type Dir = 'up' | 'down';

const SNIFF_CAP = 16 * 1024;
const EMPTY = Buffer.alloc(0);

/**
 * Reads request and response heads off copies of the relayed chunks, never holding them back:
 * heads end at CRLF CRLF (or LF LF), 16 KiB at most; bodies are skipped by Content-Length. A
 * chunked or unbounded body, bytes that are no head, a 101, or a 2xx to CONNECT ends the reading.
 * After a CONNECT the client's next bytes wait for its answer: a refusal lets them be read as a
 * retry, a 2xx makes them tunnel bytes.
 */
export class Sniffer {
  private readonly buf: Record<Dir, Buffer> = { up: EMPTY, down: EMPTY };
  private readonly skip: Record<Dir, number> = { up: 0, down: 0 };
  private readonly off: Record<Dir, boolean> = { up: false, down: false };
  /** Methods of the requests not answered yet. */
  private readonly asked: string[] = [];

  constructor(private readonly flow: Flow) {}

  feed(dir: Dir, chunk: Buffer): void {
    try {
      if (!this.off[dir]) this.parse(dir, chunk);
    } catch {
      this.stop('up');
      this.stop('down');
    }
  }

  private stop(dir: Dir): void {
    this.off[dir] = true;
    this.buf[dir] = EMPTY;
  }

  private parse(dir: Dir, chunk: Buffer): void {
    let buf = this.buf[dir].length ? Buffer.concat([this.buf[dir], chunk]) : chunk;
    let stop = false;
    for (;;) {
      const n = Math.min(this.skip[dir], buf.length);
      this.skip[dir] -= n;
      buf = buf.subarray(n);
      if (!buf.length || this.off[dir] || (dir === 'up' && this.asked.at(-1) === 'CONNECT')) break;
      const [crlf, lf] = [buf.indexOf('\r\n\r\n'), buf.indexOf('\n\n')];
      const [end, sep] = lf >= 0 && (crlf < 0 || lf < crlf) ? [lf, 2] : [crlf, 4];
      const head = buf.subarray(0, end < 0 ? 16 : end).toString('latin1');
      stop = !(dir === 'up' ? /^[A-Z]/ : /^H/).test(head) || end > SNIFF_CAP;
      if (stop || end < 0) break;
      buf = buf.subarray(end + sep);
      const body = dir === 'up' ? this.request(head) : this.response(head);
      stop = body === undefined;
      if (stop) break;
      this.skip[dir] = body ?? 0;
    }
    if (stop || buf.length > SNIFF_CAP) this.stop(dir);
    else if (!this.off[dir]) this.buf[dir] = buf;
  }

  /** Counts a request head; returns the length of its body (undefined: not a request, or chunked). */
  private request(head: string): number | undefined {
    const [, method, target] = /^([A-Z]+) (\S+) HTTP\/\d\.\d$/.exec(firstLine(head)) ?? [];
    if (!method || !target) return undefined;
    this.flow.requests++;
    this.flow.method ??= method;
    this.flow.target ??= target;
    this.asked.push(method);
    return method === 'CONNECT' ? 0 : bodyLength(head, 0);
  }

  /** Records an answer; returns the length of its body (undefined: until close, chunked, or a tunnel). */
  private response(head: string): number | undefined {
    const m = /^HTTP\/\d\.\d (\d{3})(?: (.*))?$/.exec(firstLine(head));
    if (!m) return undefined;
    const status = Number(m[1]);
    if (status < 200 && status !== 101) return 0;
    const method = this.asked.shift();
    if (this.flow.status === undefined || (method === 'CONNECT' && this.flow.method === 'CONNECT')) {
      this.flow.status = status;
      this.flow.statusText = m[2]?.trim() ?? '';
    }
    if (status === 101 || (method === 'CONNECT' && status < 300)) {
      this.stop('up');
      return undefined;
    }
    const body = method === 'HEAD' || status === 204 || status === 304 ? 0 : bodyLength(head, undefined);
    if (method === 'CONNECT' && !this.off.up) this.parse('up', EMPTY);
    return body;
  }
}

const firstLine = (head: string) => head.split(/\r?\n/, 1)[0] ?? '';

function bodyLength(head: string, none: number | undefined): number | undefined {
  if (/\ntransfer-encoding:[^\n]*chunked/i.test(head)) return undefined;
  const cl = /\ncontent-length:\s*(\d+)/i.exec(head);
  return cl ? Number(cl[1]) : none;
}
