/**
 * The proxy's answer to CONNECT as the agent sees it: the head exactly as received, parsed, and
 * what a refusal says about itself (tunnel.ts reads it off the socket).
 */

export interface ConnectAnswer {
  /** The answer head exactly as received (status line + headers + CRLF CRLF). */
  raw: Buffer;
  statusLine: string;
  httpVersion: string;
  statusCode: number;
  reason: string;
  headers: Array<[string, string]>;
  /** Bytes that arrived after the head in the same reads (a strict client sees these as a violation). */
  extra: Buffer;
  /** The head's line endings: CRLF as HTTP says, or bare LF (which lenient clients accept). */
  lineEndings: 'CRLF' | 'LF' | 'mixed';
  /** The head ended before its blank line (the proxy closed): what came is quoted as it is. */
  truncated?: boolean;
}

/** Where an answer head ends (after its blank line, CRLF or bare LF), or -1 while it has not. */
export function headEnd(buf: Buffer): number {
  const crlf = buf.indexOf('\r\n\r\n');
  const lf = buf.indexOf('\n\n');
  const mixed = buf.indexOf('\n\r\n');
  const ends = [crlf >= 0 ? crlf + 4 : -1, lf >= 0 ? lf + 2 : -1, mixed >= 0 ? mixed + 3 : -1].filter(
    (e) => e >= 0,
  );
  return ends.length ? Math.min(...ends) : -1;
}

/** The refusal's body is all here (its Content-Length, or as much as is kept). */
export function bodyComplete(a: ConnectAnswer): boolean {
  const length = a.headers.find(([k]) => /^content-length$/i.test(k));
  return a.extra.length >= MAX_REFUSAL_BODY || (length !== undefined && a.extra.length >= Number(length[1]));
}

/** What a refusal says about itself: the proxy's error header, or the title / first line of its page. */
export function refusalDetail(answer: ConnectAnswer): string | undefined {
  const marker = answer.headers.find(([k]) =>
    /^(x-squid-error|proxy-status|x-error|x-proxy-error)$/i.test(k),
  );
  if (marker) return `${marker[0]}: ${marker[1]}`;
  const body = answer.extra.toString('latin1');
  const title = /<title[^>]*>([^<]{1,160})<\/title>/i.exec(body)?.[1]?.trim();
  if (title) return `page: "${title}"`;
  const line = body
    .split(/\r?\n/)
    .find((l) => l.trim())
    ?.trim();
  return line ? `body: "${line.slice(0, 160)}"` : undefined;
}

/** How much of a refusal's body is kept for its quote. */
export const MAX_REFUSAL_BODY = 4 * 1024;

export function parseAnswerHead(raw: Buffer, extra: Buffer): ConnectAnswer {
  const text = raw.toString('latin1');
  const lines = text.split(/\r?\n/);
  const lf = (text.match(/(?<!\r)\n/g) ?? []).length;
  const crlf = (text.match(/\r\n/g) ?? []).length;
  const statusLine = lines[0] ?? '';
  const m = /^HTTP\/(\d\.\d) (\d{3})(?: (.*))?$/.exec(statusLine);
  const headers: Array<[string, string]> = [];
  for (const line of lines.slice(1)) {
    if (!line) continue;
    const i = line.indexOf(':');
    if (i > 0) headers.push([line.slice(0, i), line.slice(i + 1).trim()]);
  }
  return {
    raw,
    statusLine,
    httpVersion: m?.[1] ?? '',
    statusCode: m ? Number(m[2]) : 0,
    reason: m?.[3] ?? '',
    headers,
    extra,
    lineEndings: lf && crlf ? 'mixed' : lf ? 'LF' : 'CRLF',
  };
}
