/**
 * `mqtt-ws`: MQTT 3.1.1 over a WebSocket inside the verified TLS tunnel, as FlexxAgent reaches
 * Azure IoT Hub on 443 (seed 000/001, "Azure IoT Hub (MQTT over WebSocket)"). The agent is the
 * real `ws` library (upgrade to `path` with the `mqtt` subprotocol over the TLS socket the channel
 * verified) and the real `mqtt` library over that stream, with IoT Hub's device identity:
 * client id = device id, username `<host>/<deviceId>/?api-version=2021-04-12`, a SAS-token-shaped
 * password. It subscribes to `devices/<id>/messages/devicebound/#` and publishes `messages`
 * telemetry messages of `messageBytes` at QoS 1 to `devices/<id>/messages/events/`; the lab broker
 * routes each telemetry message back as a cloud-to-device message, so the agent compares SHA-256
 * both ways.
 *
 * Checks: connect, tls-interception, pinning, protocol (WebSocket 101 with the `mqtt` subprotocol,
 * CONNACK 0, SUBACK), payload (every message back byte-identical).
 */
import { createHmac, randomBytes } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import WebSocket, { createWebSocketStream } from 'ws';
import { errorMessage } from '../../errors.ts';
import { openChannel } from '../channel.ts';
import { mqttSession, sessionVerdicts } from './mqtt.ts';
import { type ExchangeKind, type KindContext, type KindVerdicts, notRun, since } from './types.ts';

export const IOTHUB_API_VERSION = '2021-04-12';
const DEFAULT_PATH = '/$iothub/websocket';

export const mqttWsKind: ExchangeKind = {
  id: 'mqtt-ws',
  options: {
    path: { type: 'string', pattern: '^/' },
    messages: { $ref: '#/$defs/messages' },
    messageBytes: { $ref: '#/$defs/messageBytes' },
  },
  checks: () => ['connect', 'tls-interception', 'pinning', 'protocol', 'payload'],
  lab: (x) => [{ port: x.port, transport: 'https' }],
  run: runMqttWs,
};

export interface UpgradeResult {
  ws?: WebSocket;
  evidence: {
    url: string;
    requestedProtocols: string[];
    status?: number;
    statusText?: string;
    subprotocol?: string;
    headers?: Record<string, string | string[] | undefined>;
    ms: number;
  };
  error?: string;
}

/**
 * WebSocket upgrade over an established (tunnelled, verified) socket. Resolves with the open
 * WebSocket, or with why not (status and headers of a non-101 answer, a missing subprotocol, a
 * closed connection, or the named deadline).
 */
export function upgradeOver(
  socket: Socket,
  url: string,
  protocols: string[],
  headers: Record<string, string>,
  timeoutMs: number,
): Promise<UpgradeResult> {
  const t0 = performance.now();
  const evidence: UpgradeResult['evidence'] = { url, requestedProtocols: protocols, ms: 0 };
  return new Promise<UpgradeResult>((resolve) => {
    let settled = false;
    const ws = new WebSocket(url, protocols, {
      createConnection: () => socket,
      headers,
      perMessageDeflate: false,
      maxPayload: 64 * 1024 * 1024,
    });
    const timer = setTimeout(
      () => done(`no WebSocket upgrade answer within ${timeoutMs} ms (timeouts.answerMs)`),
      timeoutMs,
    );
    const done = (error?: string) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      evidence.ms = since(t0);
      if (error) {
        ws.removeAllListeners();
        ws.on('error', () => {});
        ws.terminate();
        resolve({ evidence, error });
      } else resolve({ ws, evidence });
    };
    const record = (res: IncomingMessage) => {
      evidence.status = res.statusCode ?? 0;
      evidence.statusText = res.statusMessage ?? '';
      evidence.headers = { ...res.headers };
    };
    ws.on('upgrade', (res) => {
      record(res);
      const p = res.headers['sec-websocket-protocol'];
      if (p) evidence.subprotocol = String(p);
    });
    ws.on('unexpected-response', (req, res) => {
      record(res);
      res.resume();
      req.destroy();
      done(
        `WebSocket upgrade to ${url} answered ${res.statusCode} ${res.statusMessage ?? ''}, not 101`.trim(),
      );
    });
    ws.on('open', () => {
      evidence.subprotocol = ws.protocol;
      if (ws.protocol !== protocols[0]) {
        done(`WebSocket upgraded without the "${protocols[0]}" subprotocol (got "${ws.protocol}")`);
      } else done();
    });
    ws.on('error', (err) =>
      done(
        `WebSocket upgrade to ${url} failed: ${errorMessage(err)}${evidence.status ? ` (status ${evidence.status})` : ''}`,
      ),
    );
    ws.on('close', (code, reason) =>
      done(`WebSocket closed during the upgrade (${code}${reason.length ? ` ${reason.toString()}` : ''})`),
    );
  });
}

/** An IoT Hub SAS token shape (`SharedAccessSignature sr=...&sig=...&se=...`), signed with a lab key. */
function sasToken(resource: string, ttlSeconds = 3600): string {
  const se = Math.floor(Date.now() / 1000) + ttlSeconds;
  const sr = encodeURIComponent(resource);
  const sig = createHmac('sha256', 'proxycheck-lab-device-key').update(`${sr}\n${se}`).digest('base64');
  return `SharedAccessSignature sr=${sr}&sig=${encodeURIComponent(sig)}&se=${se}`;
}

async function runMqttWs(ctx: KindContext): Promise<KindVerdicts> {
  const out: KindVerdicts = new Map();
  const channel = await openChannel(ctx, out, { dependents: ['protocol', 'payload'] });
  if (!channel) return out;
  const x = ctx.exchange;
  const path = x.path ?? DEFAULT_PATH;
  const hostPort = ctx.port === 443 ? ctx.host : `${ctx.host}:${ctx.port}`;
  const url = `wss://${hostPort}${path}`;
  const messages = x.messages ?? 5;
  const deviceId = `flexxagent-${randomBytes(6).toString('hex')}`;
  const username = `${ctx.host}/${deviceId}/?api-version=${IOTHUB_API_VERSION}`;
  const identity = {
    clientId: deviceId,
    username,
    subscribe: `devices/${deviceId}/messages/devicebound/#`,
    publishTopic: `devices/${deviceId}/messages/events/`,
  };
  const t0 = performance.now();
  let ws: WebSocket | undefined;
  try {
    const up = await upgradeOver(
      channel.socket,
      url,
      ['mqtt'],
      x.userAgent ? { 'User-Agent': x.userAgent } : {},
      ctx.timeouts.answerMs,
    );
    ws = up.ws;
    const upgrade = up.evidence;
    if (!up.ws || up.error) {
      out.set('protocol', {
        outcome: 'fail',
        message: up.error ?? 'WebSocket upgrade failed',
        evidence: { upgrade, ...identity },
        durationMs: since(t0),
      });
      out.set('payload', notRun(`the WebSocket upgrade failed (${up.error})`, 'protocol'));
      return out;
    }
    const stream = createWebSocketStream(up.ws);
    stream.on('error', () => {});
    const r = await mqttSession(stream, {
      ...identity,
      password: sasToken(`${ctx.host}/devices/${deviceId}`),
      messages,
      messageBytes: x.messageBytes ?? 512,
      messageName: (i) => `telemetry-${i + 1}`,
      keepaliveSeconds: x.session?.keepaliveSeconds ?? 60,
      timeouts: ctx.timeouts,
    });
    const v = sessionVerdicts(r, {
      messages,
      before: { upgrade, ...identity },
      beforeText: `WebSocket ${upgrade.status} with subprotocol "${upgrade.subprotocol}"`,
    });
    out.set('protocol', v.protocol);
    out.set('payload', v.payload);
    return out;
  } finally {
    ws?.terminate();
    channel.socket.destroy();
    channel.tunnel?.socket.destroy();
  }
}
