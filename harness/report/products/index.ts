/** Remedies per product: the module for a product id (undefined: product-neutral text only). */
import type { ProductId } from '../../model.ts';
import { apacheHttpd } from './apache-httpd.ts';
import { commercial } from './commercial.ts';
import { mitmproxy } from './mitmproxy.ts';
import { privoxy } from './privoxy.ts';
import { squid } from './squid.ts';
import { tinyproxy } from './tinyproxy.ts';
import { trafficServer } from './trafficserver.ts';
import type { ProductRemedy } from './types.ts';

export { SQUID_PLACEMENT, squidLines } from './squid.ts';
export type { ProductRemedy } from './types.ts';

const MODULES: Partial<Record<ProductId, ProductRemedy>> = {
  squid,
  'apache-httpd': apacheHttpd,
  'apache-trafficserver': trafficServer,
  tinyproxy,
  privoxy,
  mitmproxy,
};

export function productRemedy(id: ProductId): ProductRemedy | undefined {
  return MODULES[id] ?? commercial(id);
}
