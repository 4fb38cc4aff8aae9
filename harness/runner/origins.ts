/**
 * Where the agents' traffic ends: the origins are a strategy of the one runner. The lab (our own
 * PKI and loopback origins, the default) and live hosts (the catalog endpoints on the internet,
 * `validate --origins live`, harness/live/) each say how the agent judges certificates, where its
 * auto-detect route goes and what mutual TLS presents; a recorded capture could be a third.
 */
import { labTrustPolicy, type TrustPolicy } from '../checks/tls-judgement.ts';
import { LAB_ID_HEADER, Lab, type LabHostSpec } from '../lab/lab.ts';
import { createLabPki } from '../lab/pki.ts';
import type { RunDir } from '../lab/rundir.ts';

export interface DeviceCert {
  certPem: string;
  keyPem: string;
  subjectCN: string;
}

export interface StartedOrigins {
  /** The lab, when the origins are ours (proxies we start are configured from it). */
  lab?: Lab;
  /** How the origins' own answers are recognised behind a proxy (the lab's id header). */
  reachMarker?: { labId: string; labHeader: string };
  /** The agent's trust policy for `host`. */
  trust(host: string): TrustPolicy;
  /** The address the agent's own network gives `host` (the auto-detect route). */
  directAddress(host: string): string | undefined;
  /** The device certificate an agent presents for mutual TLS to `host`. */
  clientCert(host: string): DeviceCert;
  stop(): Promise<void>;
}

export interface OriginsStrategy {
  /** Exchanges are replayed against origins the proxy must reach (what the exchanges need). */
  start(o: { runDir: RunDir; hosts: () => LabHostSpec[] }): Promise<StartedOrigins>;
}

export interface LabOriginsOptions {
  net?: number;
  /** The enterprise deployed the corporate inspection CA to the agents' trust store. */
  trustCorporateCa?: boolean;
  /** More PEM CAs in the agents' trust store (a customer's own inspection CA, for `validate`). */
  extraTrust?: string[];
}

/** Our lab: a PKI per run and every host the exchanges need on its loopback address and real port. */
export function labOrigins(o: LabOriginsOptions = {}): OriginsStrategy {
  return {
    async start({ runDir, hosts }) {
      const pki = await createLabPki(runDir.path);
      const lab = await Lab.start({ pki, hosts: hosts(), ...(o.net ? { net: o.net } : {}) });
      // the inspection CAs a proxy definition names are made when it starts: looked up per exchange
      const ca = () => [
        pki.labRoot.cert.certPem,
        ...(o.trustCorporateCa ? pki.inspectionCas().map((c) => c.cert.certPem) : []),
        ...(o.extraTrust ?? []),
      ];
      return {
        lab,
        reachMarker: { labId: lab.id, labHeader: LAB_ID_HEADER },
        trust: (host) =>
          labTrustPolicy({
            ca: ca(),
            originIssuerCN: pki.labRoot.commonName,
            originPins: [pki.labRoot.issueLeaf([host]).spkiSha256],
          }),
        directAddress: (host) => lab.addressOf(host),
        // only mutual-TLS exchanges (CIRA) ask for it: issued on first use (the CA caches it)
        clientCert(host) {
          const device = pki.deviceCa.issueLeaf([`device.${host}`], { clientAuth: true });
          return { certPem: device.certPem, keyPem: device.keyPem, subjectCN: `device.${host}` };
        },
        stop: () => lab.stop(),
      };
    },
  };
}
