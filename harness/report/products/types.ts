/**
 * What a product module gives: the exact settings for one product, from a proxy's remediation
 * facts. One module per product in this folder; index.ts maps product ids to them. A product with
 * no module gets the product-neutral text only.
 */
import type { ProductFingerprint, ProductSetting, ProxyRemediation } from '../../model.ts';

export interface ProductRemedy {
  /** The settings to enter, each with where they go. */
  settings(r: ProxyRemediation, product: ProductFingerprint): ProductSetting[];
  /** Product-specific sentences: what this product cannot do, or how its setting behaves. */
  notes?(r: ProxyRemediation, product: ProductFingerprint): string[];
}

/** Every port CONNECT must reach that the proxy refused (443 included when it was refused). */
export function refusedPorts(r: ProxyRemediation): number[] {
  return [...new Set([...r.connectPorts.map((p) => p.port), ...(r.bumpedPorts ?? [])])].sort((a, b) => a - b);
}

/** Hosts that must go through uninspected: pinned, must-not-inspect, not TLS inside, untrusted CA. */
export function uninspectedHosts(r: ProxyRemediation): string[] {
  const hostOf = (endpoint: string) => endpoint.replace(/#.*$/, '').replace(/:\d+$/, '');
  return [
    ...new Set([
      ...r.noInspect.map((n) => n.host),
      ...(r.nonTls ?? []).map(hostOf),
      ...r.untrustedInspection.map((n) => n.host),
    ]),
  ].sort();
}

/** An idle or lifetime limit with a minute of headroom, never below `floor`. */
export function withHeadroom(seconds: number, floor = 0): number {
  return Math.max(Math.ceil(seconds) + 60, floor);
}

export function chunk<T>(items: T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}
