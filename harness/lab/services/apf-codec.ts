/**
 * The Intel AMT Port Forwarding protocol (APF) on the wire, shared by both ends of a CIRA session:
 * the lab's CIRA server (./apf.ts) and the agent playing the AMT firmware (agent/apf-client.ts,
 * for the `cira` kind). APF is what a CIRA server (Intel EMA, Open AMT MPS) speaks to AMT firmware
 * inside mutual TLS; it reuses SSH's binary framing without SSH's transport: one message-type
 * byte, then big-endian uint32 integers and uint32-length-prefixed strings. Message numbers as in
 * Intel's LMS_if.h and the Open AMT MPS (APFProcessor.ts).
 *
 * Only the subset the lab speaks is encoded and decoded; any other message type fails to decode
 * with ApfError. ORIGIN_INFO (type 240) is lab-only, not APF: a JSON OriginInfo.
 */
export const APF = {
  DISCONNECT: 1,
  SERVICE_REQUEST: 5,
  SERVICE_ACCEPT: 6,
  USERAUTH_REQUEST: 50,
  USERAUTH_FAILURE: 51,
  USERAUTH_SUCCESS: 52,
  GLOBAL_REQUEST: 80,
  REQUEST_SUCCESS: 81,
  REQUEST_FAILURE: 82,
  PROTOCOLVERSION: 192,
  KEEPALIVE_REQUEST: 208,
  KEEPALIVE_REPLY: 209,
  KEEPALIVE_OPTIONS_REQUEST: 210,
  KEEPALIVE_OPTIONS_REPLY: 211,
  /** Lab-only (not APF): the origin reports what it verified. */
  ORIGIN_INFO: 240,
} as const;

/** APF DISCONNECT reason codes (SSH's, as the MPS uses them). */
export const APF_DISCONNECT = {
  PROTOCOL_ERROR: 2,
  SERVICE_NOT_AVAILABLE: 7,
  PROTOCOL_VERSION_NOT_SUPPORTED: 8,
  BY_APPLICATION: 11,
} as const;

/** What started the firmware's CIRA connection (APF_TRIGGER_REASON). */
export const APF_TRIGGER = { USER_INITIATED: 1, ALERT: 2, PERIODIC: 4 } as const;

export const APF_AUTH_SERVICE = 'auth@amt.intel.com';
export const APF_PFWD_SERVICE = 'pfwd@amt.intel.com';

export interface OriginInfo {
  labId: string;
  host: string;
  port: number;
  /** Subject CN of the client certificate the origin's TLS server verified, if any. */
  clientCertCN?: string;
}

export type ApfMessage =
  | { type: 'disconnect'; reason: number }
  | { type: 'service-request'; service: string }
  | { type: 'service-accept'; service: string }
  | { type: 'userauth-request'; username: string; service: string; method: string; password?: string }
  | { type: 'userauth-failure'; methods: string; partial: boolean }
  | { type: 'userauth-success' }
  | { type: 'global-request'; name: string; wantReply: boolean; address?: string; port?: number }
  | { type: 'request-success'; port?: number }
  | { type: 'request-failure' }
  | { type: 'protocol-version'; major: number; minor: number; triggerReason: number; uuid: Buffer }
  | { type: 'keepalive-request'; cookie: number }
  | { type: 'keepalive-reply'; cookie: number }
  | { type: 'keepalive-options-request'; intervalSeconds: number; timeoutSeconds: number }
  | { type: 'keepalive-options-reply'; intervalSeconds: number; timeoutSeconds: number }
  | { type: 'origin-info'; info: OriginInfo };

export class ApfError extends Error {}

const PROTOCOLVERSION_BYTES = 93;

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0);
  return b;
}
function str(s: string): Buffer {
  const body = Buffer.from(s, 'utf8');
  return Buffer.concat([u32(body.length), body]);
}
function bool(v: boolean): Buffer {
  return Buffer.from([v ? 1 : 0]);
}

export function encodeApf(m: ApfMessage): Buffer {
  const t = (type: number, ...parts: Buffer[]) => Buffer.concat([Buffer.from([type]), ...parts]);
  switch (m.type) {
    case 'disconnect':
      return t(APF.DISCONNECT, u32(m.reason), Buffer.alloc(2));
    case 'service-request':
      return t(APF.SERVICE_REQUEST, str(m.service));
    case 'service-accept':
      return t(APF.SERVICE_ACCEPT, str(m.service));
    case 'userauth-request':
      return t(
        APF.USERAUTH_REQUEST,
        str(m.username),
        str(m.service),
        str(m.method),
        ...(m.method === 'password' ? [bool(false), str(m.password ?? '')] : []),
      );
    case 'userauth-failure':
      return t(APF.USERAUTH_FAILURE, str(m.methods), bool(m.partial));
    case 'userauth-success':
      return t(APF.USERAUTH_SUCCESS);
    case 'global-request':
      return t(
        APF.GLOBAL_REQUEST,
        str(m.name),
        bool(m.wantReply),
        ...(m.address !== undefined || m.port !== undefined ? [str(m.address ?? ''), u32(m.port ?? 0)] : []),
      );
    case 'request-success':
      return t(APF.REQUEST_SUCCESS, ...(m.port !== undefined ? [u32(m.port)] : []));
    case 'request-failure':
      return t(APF.REQUEST_FAILURE);
    case 'protocol-version': {
      const uuid = Buffer.alloc(16);
      m.uuid.copy(uuid, 0, 0, 16);
      return t(APF.PROTOCOLVERSION, u32(m.major), u32(m.minor), u32(m.triggerReason), uuid, Buffer.alloc(64));
    }
    case 'keepalive-request':
      return t(APF.KEEPALIVE_REQUEST, u32(m.cookie));
    case 'keepalive-reply':
      return t(APF.KEEPALIVE_REPLY, u32(m.cookie));
    case 'keepalive-options-request':
      return t(APF.KEEPALIVE_OPTIONS_REQUEST, u32(m.intervalSeconds), u32(m.timeoutSeconds));
    case 'keepalive-options-reply':
      return t(APF.KEEPALIVE_OPTIONS_REPLY, u32(m.intervalSeconds), u32(m.timeoutSeconds));
    case 'origin-info':
      return t(APF.ORIGIN_INFO, str(JSON.stringify(m.info)));
  }
}

class Cursor {
  at = 1;
  constructor(private readonly buf: Buffer) {}
  /** false when the buffer ends before n more bytes. */
  has(n: number): boolean {
    return this.buf.length >= this.at + n;
  }
  u32(): number | undefined {
    if (!this.has(4)) return undefined;
    const v = this.buf.readUInt32BE(this.at);
    this.at += 4;
    return v;
  }
  u8(): number | undefined {
    if (!this.has(1)) return undefined;
    return this.buf[this.at++];
  }
  str(max = 64 * 1024): string | undefined {
    if (!this.has(4)) return undefined;
    const n = this.buf.readUInt32BE(this.at);
    if (n > max) throw new ApfError(`string of ${n} bytes exceeds ${max}`);
    if (!this.has(4 + n)) return undefined;
    const s = this.buf.toString('utf8', this.at + 4, this.at + 4 + n);
    this.at += 4 + n;
    return s;
  }
  bytes(n: number): Buffer | undefined {
    if (!this.has(n)) return undefined;
    const b = Buffer.from(this.buf.subarray(this.at, this.at + n));
    this.at += n;
    return b;
  }
}

export interface DecodeOptions {
  /**
   * REQUEST_SUCCESS carries the bound port when it answers tcpip-forward and nothing otherwise;
   * the framing does not say which, so the reader says what it is waiting for.
   */
  requestSuccessWithPort?: boolean;
}

/**
 * Decodes the first message of `buf`: the message and its size, or undefined while incomplete.
 * Throws ApfError on a message type outside the subset.
 */
export function decodeApf(
  buf: Buffer,
  opts: DecodeOptions = {},
): { message: ApfMessage; bytes: number } | undefined {
  if (buf.length === 0) return undefined;
  const type = buf[0];
  const c = new Cursor(buf);
  const done = (message: ApfMessage) => ({ message, bytes: c.at });
  switch (type) {
    case APF.DISCONNECT: {
      const reason = c.u32();
      if (reason === undefined || !c.bytes(2)) return undefined;
      return done({ type: 'disconnect', reason });
    }
    case APF.SERVICE_REQUEST:
    case APF.SERVICE_ACCEPT: {
      const service = c.str();
      if (service === undefined) return undefined;
      return done({ type: type === APF.SERVICE_REQUEST ? 'service-request' : 'service-accept', service });
    }
    case APF.USERAUTH_REQUEST: {
      const username = c.str();
      const service = username === undefined ? undefined : c.str();
      const method = service === undefined ? undefined : c.str();
      if (username === undefined || service === undefined || method === undefined) return undefined;
      if (method !== 'password') return done({ type: 'userauth-request', username, service, method });
      const flag = c.u8();
      const password = flag === undefined ? undefined : c.str();
      if (password === undefined) return undefined;
      return done({ type: 'userauth-request', username, service, method, password });
    }
    case APF.USERAUTH_FAILURE: {
      const methods = c.str();
      const partial = methods === undefined ? undefined : c.u8();
      if (methods === undefined || partial === undefined) return undefined;
      return done({ type: 'userauth-failure', methods, partial: partial !== 0 });
    }
    case APF.USERAUTH_SUCCESS:
      return done({ type: 'userauth-success' });
    case APF.GLOBAL_REQUEST: {
      const name = c.str();
      const want = name === undefined ? undefined : c.u8();
      if (name === undefined || want === undefined) return undefined;
      if (name === 'tcpip-forward' || name === 'cancel-tcpip-forward') {
        const address = c.str();
        const port = address === undefined ? undefined : c.u32();
        if (address === undefined || port === undefined) return undefined;
        return done({ type: 'global-request', name, wantReply: want !== 0, address, port });
      }
      throw new ApfError(`global request "${name}" is outside the subset`);
    }
    case APF.REQUEST_SUCCESS: {
      if (!opts.requestSuccessWithPort) return done({ type: 'request-success' });
      const port = c.u32();
      if (port === undefined) return undefined;
      return done({ type: 'request-success', port });
    }
    case APF.REQUEST_FAILURE:
      return done({ type: 'request-failure' });
    case APF.PROTOCOLVERSION: {
      if (buf.length < PROTOCOLVERSION_BYTES) return undefined;
      const major = c.u32() ?? 0;
      const minor = c.u32() ?? 0;
      const triggerReason = c.u32() ?? 0;
      const uuid = c.bytes(16) ?? Buffer.alloc(16);
      c.bytes(64);
      return done({ type: 'protocol-version', major, minor, triggerReason, uuid });
    }
    case APF.KEEPALIVE_REQUEST:
    case APF.KEEPALIVE_REPLY: {
      const cookie = c.u32();
      if (cookie === undefined) return undefined;
      return done({ type: type === APF.KEEPALIVE_REQUEST ? 'keepalive-request' : 'keepalive-reply', cookie });
    }
    case APF.KEEPALIVE_OPTIONS_REQUEST:
    case APF.KEEPALIVE_OPTIONS_REPLY: {
      const intervalSeconds = c.u32();
      const timeoutSeconds = intervalSeconds === undefined ? undefined : c.u32();
      if (intervalSeconds === undefined || timeoutSeconds === undefined) return undefined;
      return done({
        type:
          type === APF.KEEPALIVE_OPTIONS_REQUEST ? 'keepalive-options-request' : 'keepalive-options-reply',
        intervalSeconds,
        timeoutSeconds,
      });
    }
    case APF.ORIGIN_INFO: {
      const json = c.str();
      if (json === undefined) return undefined;
      let info: OriginInfo;
      try {
        info = JSON.parse(json) as OriginInfo;
      } catch {
        throw new ApfError('ORIGIN_INFO is not JSON');
      }
      return done({ type: 'origin-info', info });
    }
    default:
      throw new ApfError(`message type ${type} is outside the APF subset`);
  }
}
