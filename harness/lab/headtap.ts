/**
 * Watches the bytes a server reads from a connection and cuts out each HTTP/1.1 request head
 * exactly as it arrived (Node's parser normalises what it hands over). Bodies are skipped by
 * Content-Length or chunked framing; an Upgrade or CONNECT turns the tap off for the rest of the
 * connection.
 */
const CRLF = Buffer.from('\r\n');
const CRLFCRLF = Buffer.from('\r\n\r\n');
const MAX_HEAD = 64 * 1024;

type State = 'head' | 'body' | 'chunk-size' | 'chunk-data' | 'off';

export class HeadTap {
  private buf: Buffer = Buffer.alloc(0);
  private state: State = 'head';
  private remaining = 0;
  private readonly heads: Buffer[] = [];

  feed(chunk: Buffer): void {
    if (this.state === 'off') return;
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    while (this.step()) {
      // keep consuming
    }
  }

  /** The next complete head, in arrival order. */
  shift(): Buffer | undefined {
    return this.heads.shift();
  }

  private step(): boolean {
    switch (this.state) {
      case 'off':
        this.buf = Buffer.alloc(0);
        return false;
      case 'head': {
        const idx = this.buf.indexOf(CRLFCRLF);
        if (idx < 0) {
          if (this.buf.length > MAX_HEAD) this.state = 'off';
          return false;
        }
        const head = Buffer.from(this.buf.subarray(0, idx + 4));
        this.heads.push(head);
        this.buf = this.buf.subarray(idx + 4);
        const text = head.toString('latin1');
        if (/^CONNECT /.test(text) || /\r\nupgrade:/i.test(text)) {
          this.state = 'off';
        } else if (/\r\ntransfer-encoding:[^\r]*chunked/i.test(text)) {
          this.state = 'chunk-size';
        } else {
          const cl = /\r\ncontent-length:\s*(\d+)/i.exec(text);
          this.remaining = cl ? Number(cl[1]) : 0;
          this.state = this.remaining > 0 ? 'body' : 'head';
        }
        return true;
      }
      case 'body':
      case 'chunk-data': {
        const take = Math.min(this.remaining, this.buf.length);
        this.remaining -= take;
        this.buf = this.buf.subarray(take);
        if (this.remaining > 0) return false;
        this.state = this.state === 'body' ? 'head' : 'chunk-size';
        return true;
      }
      case 'chunk-size': {
        const idx = this.buf.indexOf(CRLF);
        if (idx < 0) return false;
        const size = Number.parseInt(this.buf.subarray(0, idx).toString('latin1'), 16);
        if (Number.isNaN(size)) {
          this.state = 'off';
          return false;
        }
        if (size === 0) {
          // last chunk: optional trailers, then an empty line
          const end = this.buf.indexOf(CRLFCRLF);
          if (end < 0) return false;
          this.buf = this.buf.subarray(end + 4);
          this.state = 'head';
          return true;
        }
        this.buf = this.buf.subarray(idx + 2);
        this.remaining = size + 2;
        this.state = 'chunk-data';
        return true;
      }
    }
  }
}
