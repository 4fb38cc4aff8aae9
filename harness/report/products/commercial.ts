/**
 * Commercial secure web gateways: no file to edit, so the concept their documentation uses and
 * the exact list to enter there. One row per product.
 */
import type { ProductFingerprint, ProductId, ProductSetting, ProxyRemediation } from '../../model.ts';
import { type ProductRemedy, refusedPorts, uninspectedHosts } from './types.ts';

interface Console {
  /** Where hosts go to be exempt from TLS inspection (and pinned applications). */
  bypass: string;
  /** Where the ports CONNECT may reach are allowed. */
  ports: string;
  /** Where credentials / the authentication scheme for these clients are set. */
  auth: string;
}

const CONSOLES: Partial<Record<ProductId, Console>> = {
  zscaler: {
    bypass:
      'ZIA Admin Portal, SSL Inspection policy: a rule with the action "Do Not Inspect" for a custom URL category holding these hosts',
    ports:
      "ZIA: allow these non-standard ports for the agents' CONNECT traffic (or forward them around ZIA, e.g. as a PAC/Client Connector bypass)",
    auth: 'ZIA authentication settings (or an authentication exemption for these hosts)',
  },
  netskope: {
    bypass:
      'Netskope SSL Decryption policy: "Do Not Decrypt" for these domains (pinned ones also under Certificate Pinned Applications, action Bypass)',
    ports: 'Netskope steering configuration: steer these ports or exempt them',
    auth: 'Netskope proxy authentication (or an exception for these hosts)',
  },
  proxysg: {
    bypass: 'ProxySG SSL Intercept Layer: a "Do not intercept" rule whose destination is these hosts',
    ports:
      'ProxySG: the ports allowed for CONNECT (the Web Access Layer rule denying CONNECT to ports other than 443)',
    auth: 'ProxySG Web Authentication Layer: a realm with the scheme the agents speak, or an exemption for these hosts',
  },
  forcepoint: {
    bypass:
      'Forcepoint: SSL decryption bypass, add these hosts (pinned ones as certificate-pinned application exceptions)',
    ports: 'Forcepoint: the tunnelled ports allowed through the proxy',
    auth: 'Forcepoint user identification: the scheme the agents speak, or an authentication exception for these hosts',
  },
  paloalto: {
    bypass:
      'PAN-OS Decryption policy: a rule with the action "No Decrypt" for a custom URL category holding these hosts (pinned ones also under SSL Decryption Exclusion)',
    ports: 'PAN-OS explicit proxy / Security policy: allow these service ports for the agents',
    auth: 'PAN-OS Authentication policy: the scheme the agents speak, or an exception for these hosts',
  },
  fortinet: {
    bypass:
      'FortiGate SSL/SSH Inspection profile: "Exempt from SSL inspection" with these hosts as wildcard FQDN addresses',
    ports:
      "FortiGate explicit web proxy: the firewall policy's allowed services for CONNECT, add these ports",
    auth: 'FortiGate explicit proxy authentication scheme (or an exemption for these hosts)',
  },
};

function settings(c: Console, r: ProxyRemediation): ProductSetting[] {
  const out: ProductSetting[] = [];
  const hosts = uninspectedHosts(r);
  if (hosts.length) out.push({ where: c.bypass, lines: hosts });
  const ports = refusedPorts(r);
  if (ports.length) out.push({ where: c.ports, lines: [ports.join(', ')] });
  const auth = [...r.credentials, ...(r.authSchemes ?? []).map((a) => a.endpoint)];
  if (auth.length) out.push({ where: c.auth, lines: [...new Set(auth)] });
  return out;
}

export function commercial(id: ProductId): ProductRemedy | undefined {
  const c = CONSOLES[id];
  return c ? { settings: (r: ProxyRemediation, _p: ProductFingerprint) => settings(c, r) } : undefined;
}
