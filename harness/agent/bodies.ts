/** Deterministic request bodies and head comparison shared by the exchange kinds. */
import { errorMessage, HarnessError } from '../errors.ts';
import { sha256, sourceBytes } from '../lab/lab.ts';

/** A JSON report body of exactly `bytes` bytes, deterministic per request name. */
export function reportBody(name: string, bytes: number): Buffer {
  const prefix = Buffer.from(`{"report":"${name}","data":"`);
  const suffix = Buffer.from('"}');
  const fill = Math.max(0, bytes - prefix.length - suffix.length);
  const data = Buffer.from(
    sourceBytes(Math.ceil((fill * 3) / 4) + 3)
      .toString('base64')
      .slice(0, fill),
  );
  const body = Buffer.concat([prefix, data, suffix]);
  return body.length > bytes ? body.subarray(0, bytes) : body;
}

/** `line 3: sent "X-A: 1", received "x-a: 1"` */
export function firstDifference(sent: string, received: string): string {
  const a = sent.split('\r\n');
  const b = received.split('\r\n');
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    if (a[i] !== b[i]) {
      return `head line ${i + 1} sent as ${JSON.stringify(a[i] ?? '(nothing)')}, arrived as ${JSON.stringify(b[i] ?? '(nothing)')}`;
    }
  }
  return 'heads differ';
}

/**
 * Our lab's JSON answer. When it does not parse, the digest the origin declared for it tells whose
 * fault that is: intact bytes that are not JSON are our bug (HarnessError, `harness_fail`);
 * altered bytes are the proxy's doing (a plain Error the kind judges as a payload failure).
 */
export function labJson<T>(body: Buffer, declaredSha256: string, what: string): T {
  try {
    return JSON.parse(body.toString('utf8')) as T;
  } catch (err) {
    const why = errorMessage(err);
    if (declaredSha256 && sha256(body) === declaredSha256)
      throw new HarnessError(`${what}: the lab's answer arrived intact but does not parse as JSON (${why})`);
    throw new Error(
      `${what}: the answer is not the lab's JSON and its SHA-256 is not the one the origin declared (${why})`,
    );
  }
}
