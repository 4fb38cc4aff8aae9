/**
 * Lab services: what an origin speaks beyond plain HTTP. A service is created once per lab and
 * can serve raw streams (on `tls` and `tcp` origins, chosen by a port's `service`) and WebSocket
 * upgrades (on every `https` origin, chosen by path prefix). Each protocol lives in its own
 * module here and is listed in services/index.ts.
 */
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { LabPki } from '../pki.ts';

export interface StreamInfo {
  host: string;
  port: number;
  /** Subject CN of the client certificate the origin verified (mutual TLS), if any. */
  clientCertCN?: string;
  /** The lab's id, as sent in `x-proxycheck-lab`. */
  labId: string;
}

export interface LabServiceHost {
  readonly id: string;
  readonly pki: LabPki;
}

export interface LabService {
  /** Name used by a port's `service` (raw streams). */
  name: string;
  stream?(socket: Duplex, info: StreamInfo): void;
  /** Path prefixes of WebSocket upgrades this service answers on https origins. */
  upgradePaths?: string[];
  upgrade?(req: IncomingMessage, socket: Duplex, head: Buffer, info: StreamInfo): void;
  close(): Promise<void>;
}

export type LabServiceFactory = (lab: LabServiceHost) => LabService;
