/**
 * `mqtt`: a real MQTT broker (aedes) behind the lab origins.
 *  - raw streams on `tls`/`tcp` origins (port spec `service: mqtt`): MQTT over TLS as the ESET
 *    Push Notification Service speaks it on 8883 and its failover 443;
 *  - WebSocket upgrades on https origins at `/$iothub/websocket` with the `mqtt` subprotocol, as
 *    Azure IoT Hub accepts device connections on 443.
 *
 * Routing, on top of ordinary MQTT fan-out: like IoT Hub, a message a device publishes on its
 * telemetry topic `devices/<id>/messages/events/...` comes back to that device as a
 * cloud-to-device message on `devices/<id>/messages/devicebound/<property bag>`, payload untouched,
 * so the agent can compare both directions byte for byte. On the WebSocket route a device must
 * present IoT Hub's identity: username `<host>/<deviceId>/?api-version=...` with the client id as
 * device id (else CONNACK 4, bad user name or password), like the real hub.
 */
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { Aedes, type AuthenticateError } from 'aedes';
import { createWebSocketStream, WebSocketServer } from 'ws';
import type { LabService, LabServiceFactory, StreamInfo } from './types.ts';
import { closeWebSockets } from './ws.ts';

export const IOTHUB_WS_PATH = '/$iothub/websocket';
const TELEMETRY = /^devices\/([^/]+)\/messages\/events\/?/;

/** The C2D topic IoT Hub uses for a device (property bag with the `$.to` system property). */
export function cloudToDeviceTopic(deviceId: string): string {
  return `devices/${deviceId}/messages/devicebound/%24.to=%2Fdevices%2F${encodeURIComponent(deviceId)}%2Fmessages%2FdeviceBound`;
}

/** What a connection came in on: IoT Hub identity is enforced only on the WebSocket route. */
interface ConnInfo extends StreamInfo {
  route: 'iothub-ws' | 'stream';
}

export const mqttService: LabServiceFactory = (): LabService => {
  const conns = new WeakMap<object, ConnInfo>();
  const live = new Set<Duplex>();
  let broker: Promise<Aedes> | undefined;
  let closed = false;

  const start = (): Promise<Aedes> => {
    broker ??= Aedes.createBroker({ heartbeatInterval: 60_000, connectTimeout: 30_000 }).then((b) => {
      b.authenticate = (client, username, _password, done) => {
        const info = conns.get(client.conn);
        if (info?.route !== 'iothub-ws') return done(null, true);
        const want = `${info.host}/${client.id}/?api-version=`;
        if (username?.startsWith(want)) return done(null, true);
        const err = new Error(
          `IoT Hub identity: username "${username ?? ''}" does not start with "${want}"`,
        ) as AuthenticateError;
        err.returnCode = 4;
        done(err, null);
      };
      b.on('publish', (packet, client) => {
        if (!client) return;
        const m = TELEMETRY.exec(packet.topic);
        if (!m || m[1] !== client.id) return;
        b.publish(
          {
            cmd: 'publish',
            topic: cloudToDeviceTopic(client.id),
            payload: packet.payload,
            qos: 1,
            retain: false,
            dup: false,
          },
          () => {},
        );
      });
      b.on('clientError', () => {});
      b.on('connectionError', () => {});
      return b;
    });
    return broker;
  };

  const handle = (stream: Duplex, info: ConnInfo, req?: IncomingMessage) => {
    live.add(stream);
    stream.once('close', () => live.delete(stream));
    stream.on('error', () => stream.destroy());
    conns.set(stream, info);
    start().then(
      (b) => {
        if (closed || stream.destroyed) return stream.destroy();
        b.handle(stream, req);
      },
      () => stream.destroy(),
    );
  };

  const wss = new WebSocketServer({
    noServer: true,
    maxPayload: 64 * 1024 * 1024,
    // IoT Hub speaks MQTT only under the `mqtt` subprotocol; anything else gets no subprotocol
    handleProtocols: (protocols) => (protocols.has('mqtt') ? 'mqtt' : false),
  });

  return {
    name: 'mqtt',
    stream(socket, info) {
      handle(socket, { ...info, route: 'stream' });
    },
    upgradePaths: [IOTHUB_WS_PATH],
    upgrade(req, socket, head, info) {
      wss.handleUpgrade(req, socket, head, (ws) => {
        if (ws.protocol !== 'mqtt') {
          ws.close(1002, 'the mqtt subprotocol is required');
          return;
        }
        ws.on('error', () => ws.terminate());
        handle(createWebSocketStream(ws), { ...info, route: 'iothub-ws' }, req);
      });
    },
    async close() {
      closed = true;
      for (const s of live) s.destroy();
      await closeWebSockets(wss);
      const b = await broker?.catch(() => undefined);
      if (b) await new Promise<void>((resolve) => b.close(() => resolve()));
    },
  };
};
