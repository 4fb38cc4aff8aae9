/**
 * `mqtt`: MQTT 3.1.1 over TLS straight inside the CONNECT tunnel (ESET Push Notification Service:
 * 8883, failing over to 443 as the ESET agent does when 8883 cannot be reached). The agent is the
 * real `mqtt` library over the verified TLS socket; the lab origin is a real broker (aedes, lab
 * service `mqtt`).
 *
 * The session (shared with `mqtt-ws`): CONNECT → CONNACK (return code 0), SUBSCRIBE QoS 1 →
 * SUBACK, then `messages` PUBLISHes of `messageBytes` at QoS 1, each acknowledged (PUBACK) and
 * delivered back by the broker; every message must come back byte-identical (SHA-256 both ways).
 * Here the agent subscribes to its own push topic `proxycheck/push/<clientId>` (the seed says
 * nothing of ESET's topics), so the broker's ordinary routing brings each message back.
 *
 * Checks: connect (8883), failover (443: pass when 8883 failed and 443 did the whole session;
 * not applicable when 8883 worked), tls-interception, pinning, protocol, payload — the last four
 * for the port actually used, reported under that endpoint.
 */
import { randomBytes } from 'node:crypto';
import type { Duplex } from 'node:stream';
import { MqttClient } from 'mqtt';
import { errorMessage } from '../../errors.ts';
import { sha256 } from '../../lab/lab.ts';
import { reportBody } from '../bodies.ts';
import { openChannel } from '../channel.ts';
import {
  type ExchangeKind,
  type KindContext,
  type KindVerdict,
  type KindVerdicts,
  notRun,
  since,
  type Timeouts,
} from './types.ts';

const LATER = ['tls-interception', 'pinning', 'protocol', 'payload'];

export const mqttKind: ExchangeKind = {
  id: 'mqtt',
  options: {
    messages: { $ref: '#/$defs/messages' },
    messageBytes: { $ref: '#/$defs/messageBytes' },
    session: { $ref: '#/$defs/session' },
    failover: { $ref: '#/$defs/failover' },
  },
  checks: () => ['connect', ...LATER],
  lab: (x) => [{ port: x.port, transport: 'tls', service: 'mqtt' }],
  run: runMqtt,
};

// ---------------------------------------------------------------------------------------------
// The MQTT session, shared with mqtt-ws.

export interface MqttSessionOptions {
  clientId: string;
  username?: string;
  password?: string;
  /** Topic filter the agent subscribes to (QoS 1). */
  subscribe: string;
  /** Topic of each PUBLISH (QoS 1). */
  publishTopic: string;
  messages: number;
  messageBytes: number;
  /** Names each message body (deterministic per name). */
  messageName: (i: number) => string;
  keepaliveSeconds: number;
  timeouts: Timeouts;
}

export interface MqttStep {
  message: string;
  bytes: number;
  sentSha256: string;
  pubackMs?: number;
  receivedTopic?: string;
  receivedBytes?: number;
  receivedSha256?: string;
}

export interface MqttSessionResult {
  /** CONNACK as received (present whenever the broker answered CONNECT). */
  connack?: { returnCode: number; sessionPresent: boolean; ms: number };
  suback?: { granted: number[]; ms: number };
  /** Why the handshake (CONNACK 0 + SUBACK granted) did not complete. */
  handshakeError?: string;
  /** Why the messages did not all round-trip. */
  messagesError?: string;
  steps: MqttStep[];
  received: number;
  ms: number;
}

const CONNACK_CODES: Record<number, string> = {
  1: 'unacceptable protocol version',
  2: 'identifier rejected',
  3: 'server unavailable',
  4: 'bad user name or password',
  5: 'not authorized',
};

/** Rejects with `what` and the named deadline when `p` does not settle within `ms`. */
export function deadline<T>(p: Promise<T>, ms: number, what: string, name: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms (timeouts.${name})`)), ms);
  });
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}

/**
 * One MQTT 3.1.1 session over `stream` (already through the proxy and verified): the mqtt library
 * speaks CONNECT/SUBSCRIBE/PUBLISH; every wait has a deadline. The client is ended (forcibly) and
 * the stream destroyed before this returns.
 */
export async function mqttSession(stream: Duplex, o: MqttSessionOptions): Promise<MqttSessionResult> {
  const t0 = performance.now();
  const steps: MqttStep[] = [];
  const res: MqttSessionResult = { steps, received: 0, ms: 0 };
  let closedBy: string | undefined;
  let lastError: string | undefined;
  const client = new MqttClient(() => stream, {
    protocolId: 'MQTT',
    protocolVersion: 4,
    clientId: o.clientId,
    ...(o.username !== undefined ? { username: o.username } : {}),
    ...(o.password !== undefined ? { password: o.password } : {}),
    clean: true,
    keepalive: o.keepaliveSeconds,
    reconnectPeriod: 0,
    // our own deadline (named) fires first
    connectTimeout: o.timeouts.answerMs + 1_000,
    resubscribe: false,
  });
  const sent: Buffer[] = [];
  const arrivals: Array<{ topic: string; payload: Buffer }> = [];
  let wake: (() => void) | undefined;
  const wakeUp = () => wake?.();
  client.on('error', (err) => {
    lastError = errorMessage(err);
    wakeUp();
  });
  client.on('close', () => {
    closedBy ??= lastError ? `connection closed (${lastError})` : 'the connection was closed';
    wakeUp();
  });
  client.on('packetreceive', (packet) => {
    if (packet.cmd === 'connack') {
      res.connack = {
        returnCode: packet.returnCode ?? -1,
        sessionPresent: !!packet.sessionPresent,
        ms: since(t0),
      };
    }
    wakeUp();
  });
  client.on('message', (topic, payload) => {
    arrivals.push({ topic, payload: Buffer.from(payload) });
    wakeUp();
  });

  /** Resolves when `done()` holds, rejects when the connection closed first. */
  const until = (done: () => boolean, what: string): Promise<void> =>
    new Promise<void>((resolve, reject) => {
      const test = () => {
        if (done()) {
          wake = undefined;
          resolve();
        } else if (closedBy) {
          wake = undefined;
          reject(new Error(`${what}: ${closedBy}`));
        }
      };
      wake = test;
      test();
    });

  try {
    // CONNECT → CONNACK
    try {
      await deadline(
        until(() => res.connack !== undefined, 'no CONNACK'),
        o.timeouts.answerMs,
        'waiting for CONNACK',
        'answerMs',
      );
    } catch (err) {
      res.handshakeError = errorMessage(err);
      return res;
    }
    const rc = res.connack?.returnCode ?? -1;
    if (rc !== 0) {
      res.handshakeError = `CONNACK return code ${rc} (${CONNACK_CODES[rc] ?? 'unknown'}), not 0`;
      return res;
    }
    // SUBSCRIBE → SUBACK
    const s0 = performance.now();
    try {
      const granted = await deadline(
        new Promise<number[]>((resolve, reject) => {
          client.subscribe(o.subscribe, { qos: 1 }, (err, g) =>
            err ? reject(err) : resolve((g ?? []).map((x) => x.qos)),
          );
        }),
        o.timeouts.answerMs,
        `waiting for SUBACK to ${o.subscribe}`,
        'answerMs',
      );
      res.suback = { granted, ms: since(s0) };
      if (!granted.length || granted.some((q) => q === 128)) {
        res.handshakeError = `SUBACK refused the subscription to ${o.subscribe} (granted ${JSON.stringify(granted)})`;
        return res;
      }
    } catch (err) {
      res.handshakeError = `SUBSCRIBE ${o.subscribe} failed: ${errorMessage(err)}`;
      return res;
    }
    // PUBLISH × N (QoS 1) → PUBACK each, then every message back
    const m0 = performance.now();
    try {
      for (let i = 0; i < o.messages; i++) {
        const body = reportBody(o.messageName(i), o.messageBytes);
        sent.push(body);
        const step: MqttStep = { message: o.messageName(i), bytes: body.length, sentSha256: sha256(body) };
        steps.push(step);
        const p0 = performance.now();
        await deadline(
          new Promise<void>((resolve, reject) => {
            client.publish(o.publishTopic, body, { qos: 1 }, (err) => (err ? reject(err) : resolve()));
            // a closed connection never acknowledges
            until(() => false, `PUBLISH ${step.message}`).catch(reject);
          }),
          o.timeouts.requestMs,
          `waiting for PUBACK of ${step.message}`,
          'requestMs',
        );
        step.pubackMs = since(p0);
      }
      await deadline(
        until(() => arrivals.length >= o.messages, `${arrivals.length} of ${o.messages} messages came back`),
        o.timeouts.requestMs,
        `waiting for ${o.messages} messages back`,
        'requestMs',
      );
    } catch (err) {
      res.messagesError = `${errorMessage(err)} (${arrivals.length} of ${o.messages} came back after ${since(m0)} ms)`;
    }
    return res;
  } finally {
    wake = undefined;
    res.received = arrivals.length;
    arrivals.forEach((a, i) => {
      const step = steps[i];
      if (!step) return;
      step.receivedTopic = a.topic;
      step.receivedBytes = a.payload.length;
      step.receivedSha256 = sha256(a.payload);
    });
    res.ms = since(t0);
    await new Promise<void>((resolve) => {
      const t = setTimeout(resolve, 1_000);
      client.end(true, {}, () => {
        clearTimeout(t);
        resolve();
      });
    });
    stream.destroy();
  }
}

/** `protocol` and `payload` verdicts from a session; `handshake` describes what came before MQTT. */
export function sessionVerdicts(
  r: MqttSessionResult,
  o: { messages: number; before?: Record<string, unknown>; beforeText?: string; endpoint?: string },
): { protocol: KindVerdict; payload: KindVerdict } {
  const at = o.endpoint ? { endpoint: o.endpoint } : {};
  const evidence = {
    ...(o.before ?? {}),
    ...(r.connack ? { connack: r.connack } : {}),
    ...(r.suback ? { suback: r.suback } : {}),
  };
  const handshakeMs = (r.connack?.ms ?? 0) + (r.suback?.ms ?? 0);
  if (r.handshakeError) {
    return {
      protocol: {
        outcome: 'fail',
        message: `MQTT handshake failed: ${r.handshakeError}`,
        evidence,
        durationMs: r.ms,
        ...at,
      },
      payload: { ...notRun(`the MQTT handshake failed (${r.handshakeError})`, 'protocol'), ...at },
    };
  }
  const protocol: KindVerdict = {
    outcome: 'pass',
    message: `${o.beforeText ? `${o.beforeText}; ` : ''}CONNACK return code 0; SUBACK granted QoS ${r.suback?.granted.join(',')}`,
    evidence,
    durationMs: handshakeMs,
    ...at,
  };
  const steps = r.steps;
  const bad = steps.find((s) => s.receivedSha256 !== undefined && s.receivedSha256 !== s.sentSha256);
  const total = steps.reduce((a, s) => a + s.bytes, 0);
  const counts = {
    sent: steps.length,
    acknowledged: steps.filter((s) => s.pubackMs !== undefined).length,
    received: r.received,
  };
  let payload: KindVerdict;
  if (bad) {
    payload = {
      outcome: 'fail',
      message: `${bad.message}: came back with SHA-256 ${bad.receivedSha256?.slice(0, 16)}… (${bad.receivedBytes} bytes), not ${bad.sentSha256.slice(0, 16)}… (${bad.bytes} bytes)`,
      evidence: { counts, steps },
      durationMs: r.ms,
      ...at,
    };
  } else if (r.messagesError || r.received !== o.messages || steps.length !== o.messages) {
    payload = {
      outcome: 'fail',
      message: `messages did not round-trip: ${r.messagesError ?? `${r.received} of ${o.messages} came back`}`,
      evidence: { counts, steps },
      durationMs: r.ms,
      ...at,
    };
  } else {
    payload = {
      outcome: 'pass',
      message: `${o.messages} messages (${total} bytes) published at QoS 1, acknowledged and delivered back; every SHA-256 equal both ways`,
      evidence: { counts, steps },
      durationMs: r.ms,
      ...at,
    };
  }
  return { protocol, payload };
}

// ---------------------------------------------------------------------------------------------
// ESET push: MQTT over TLS (8883; the failover to 443 is the route policy's, harness/route/policies.ts).

async function runMqtt(ctx: KindContext): Promise<KindVerdicts> {
  const out: KindVerdicts = new Map();
  const channel = await openChannel(ctx, out, { dependents: ['protocol', 'payload'] });
  if (!channel) return out;
  const x = ctx.exchange;
  const messages = x.messages ?? 3;
  const clientId = `eset-agent-${randomBytes(6).toString('hex')}`;
  const topic = `proxycheck/push/${clientId}`;
  let r: MqttSessionResult;
  try {
    r = await mqttSession(channel.socket, {
      clientId,
      subscribe: topic,
      publishTopic: topic,
      messages,
      messageBytes: x.messageBytes ?? 256,
      messageName: (i) => `push-${i + 1}`,
      keepaliveSeconds: x.session?.keepaliveSeconds ?? 60,
      timeouts: ctx.timeouts,
    });
  } finally {
    channel.socket.destroy();
    channel.tunnel?.socket.destroy();
  }
  const v = sessionVerdicts(r, {
    messages,
    before: { clientId, subscribe: topic, publishTopic: topic, port: ctx.port },
  });
  out.set('protocol', v.protocol);
  out.set('payload', v.payload);
  return out;
}
