/** Remediations built by hand for the product remedies' tests. */
import type { ProxyRemediation, RemediationProduct } from '../../harness/model.ts';

/** A remediation of proxy `external` with no fact set: a test sets the ones it is about. */
export function emptyRemediation(product: RemediationProduct): ProxyRemediation {
  return {
    proxy: 'external',
    product,
    connectPorts: [],
    refusedEndpoints: [],
    noInspect: [],
    untrustedInspection: [],
    credentials: [],
    squidConf: [],
    text: [],
  };
}
