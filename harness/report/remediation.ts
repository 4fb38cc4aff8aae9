/**
 * Per-proxy remediation built from a report's results: which CONNECT ports to allow, which hosts
 * to exclude from TLS inspection, whether the agents need credentials, how long tunnels must stay
 * open while idle, what leaked. The text is product-neutral; the product, recognised from what the
 * proxy said (fingerprint.ts), adds its exact settings (products/: squid.conf lines, AllowCONNECT,
 * records.config, a console's bypass list). A product we cannot identify gets the text only.
 */
import { CHECK_ORDER, checkDefinition } from '../checks/index.ts';
import type { RemedyFacts } from '../checks/types.ts';
import type { CheckResult, ProxyInfo, ProxyRemediation, RemediationProduct, RunReport } from '../model.ts';
import { type CatalogEndpoint, resolveHost, type ScenarioSet } from '../scenarios.ts';
import { describeProduct, fingerprint } from './fingerprint.ts';
import { productRemedy, squidLines } from './products/index.ts';

export type { ProxyRemediation };

type Product = RemediationProduct;

export interface RemediationOptions {
  /**
   * The run's scenario data: tells pinned rows from must-not-inspect ones where the evidence does
   * not (lab mode's pinning check also models the strictest agent for must-not-inspect hosts).
   */
  scenarios?: ScenarioSet;
}

/** Catalog rows by `host:port`, hosts resolved as the run resolved them. */
function rowsByEndpoint(set: ScenarioSet | undefined): Map<string, CatalogEndpoint> {
  const rows = new Map<string, CatalogEndpoint>();
  for (const c of set?.catalogs.values() ?? []) {
    for (const e of c.endpoints) {
      try {
        rows.set(`${resolveHost(e.host, set as ScenarioSet).toLowerCase()}:${e.port}`, e);
      } catch {
        // a host with no value for a parameter matches no result
      }
    }
  }
  return rows;
}

/** The product behind a proxy, for the remedies: its id and what told us (harness/report/fingerprint.ts). */
export function detectProduct(
  proxy: ProxyInfo,
  results: CheckResult[],
): { product: Product; evidence?: string } {
  const fp = fingerprint(proxy, results);
  return { product: fp.id, ...(fp.evidence.length ? { evidence: fp.evidence.join('; ') } : {}) };
}

function forProxy(
  proxy: ProxyInfo,
  results: CheckResult[],
  rows: Map<string, CatalogEndpoint>,
): ProxyRemediation {
  const facts: RemedyFacts = {
    connectPorts: [],
    refusedEndpoints: [],
    noInspect: [],
    untrustedInspection: [],
    credentials: [],
  };
  // every check contributes what its results say must change (its remedy hook)
  const env = { rows };
  for (const id of CHECK_ORDER) checkDefinition(id).collectRemedy?.(results, facts, env);
  const unique = (xs: string[] | undefined) => [...new Set(xs ?? [])];
  const fp = proxy.product ?? fingerprint(proxy, results);
  const rem: ProxyRemediation = {
    proxy: proxy.id,
    product: fp.id,
    ...(fp.evidence.length ? { productEvidence: fp.evidence.join('; ') } : {}),
    productName: describeProduct(fp),
    ...facts,
    refusedEndpoints: unique(facts.refusedEndpoints),
    credentials: unique(facts.credentials),
    ...(facts.httpRefused ? { httpRefused: unique(facts.httpRefused) } : {}),
    ...(facts.nonTls ? { nonTls: unique(facts.nonTls) } : {}),
    ...(facts.leakedProxyAuthorization
      ? { leakedProxyAuthorization: unique(facts.leakedProxyAuthorization) }
      : {}),
    squidConf: [],
    text: [],
  };
  rem.text = genericText(rem);
  const module = productRemedy(fp.id);
  if (module && rem.text.length) {
    const settings = module.settings(rem, fp);
    if (settings.length) rem.settings = settings;
    rem.text.push(...(module.notes?.(rem, fp) ?? []));
    if (fp.id === 'squid') rem.squidConf = squidLines(rem);
  }
  return rem;
}

export function list(items: string[], max = 6): string {
  return items.length <= max
    ? items.join(', ')
    : `${items.slice(0, max).join(', ')} and ${items.length - max} more`;
}

export function genericText(r: ProxyRemediation): string[] {
  const out: string[] = [];
  const ports = r.connectPorts.map((p) => p.port);
  if (ports.length) {
    out.push(
      `Allow CONNECT to port${ports.length > 1 ? 's' : ''} ${ports.join(', ')}: the proxy refused it with 403 for ${list(r.connectPorts.flatMap((p) => p.endpoints))} (many proxies allow CONNECT to 443 only). This opens CONNECT to ${ports.length > 1 ? 'these ports' : 'this port'} for the destinations your other rules allow; no other port.`,
    );
  }
  if (ports.includes(443)) {
    out.push(
      "The proxy refuses CONNECT even to port 443: it probably does not let this machine (or the agents) use it at all; allow the agents' network before any deny rule.",
    );
  }
  if (r.refusedEndpoints.length) {
    out.push(
      `Allow CONNECT to ${list(r.refusedEndpoints)}: refused with 403 while other hosts on the same port went through (a host or category rule). This opens these hosts only.`,
    );
  }
  if (r.httpRefused?.length) {
    out.push(
      `Allow plain HTTP (forwarded requests) to ${list(r.httpRefused)}: the proxy refused them with 403. This opens plain HTTP to these hosts only.`,
    );
  }
  if (r.noInspect.length) {
    const by = [...new Set(r.noInspect.map((n) => n.reSignedBy))].map((b) => `"${b}"`).join(', ');
    out.push(
      `Exclude from TLS inspection (SSL bump / HTTPS inspection bypass list) ${list(
        r.noInspect.map(
          (n) =>
            `${n.host}${n.pinned ? ' (pinned)' : n.notHttp ? ' (not HTTP inside TLS: a proxy that decrypts and parses HTTP, like squid bump, breaks it even with its CA deployed)' : ' (vendor: must not be inspected)'}`,
        ),
        12,
      )}: they were re-signed by ${by}${r.noInspect.some((n) => n.pinned) ? '; a pinned agent refuses any substitute key, even from a trusted CA' : ''}. This opens no port; only these hosts go uninspected.`,
    );
  }
  if (r.untrustedInspection.length) {
    const by = [...new Set(r.untrustedInspection.map((n) => n.reSignedBy))].map((b) => `"${b}"`).join(', ');
    out.push(
      `Deploy the inspection CA ${by} to the agents' trust store (then re-check with --trust-ca FILE), or exclude ${list(r.untrustedInspection.map((n) => n.host))} from inspection: the agents refuse these re-signed certificates. Deploying the CA opens nothing.`,
    );
  }
  if (r.bumpedPorts?.length) {
    out.push(
      `Allow CONNECT to port(s) ${r.bumpedPorts.join(', ')} explicitly: TLS there was re-signed, and a proxy that intercepts may be answering 200 only to show its own refusal inside the session.`,
    );
  }
  if (r.nonTls?.length) {
    out.push(
      `Let CONNECT tunnels to ${list(r.nonTls)} carry traffic that is not TLS: the proxy inspects TLS and closed these tunnels when the agent spoke its own protocol. Exclude these hosts from TLS inspection and protocol enforcement before the proxy looks at the first bytes. This opens no port; these hosts' tunnels are no longer inspected.`,
    );
  }
  if (r.authSchemes?.length) {
    const offered = [...new Set(r.authSchemes.flatMap((a) => a.offered))].join(', ');
    const sent = [...new Set(r.authSchemes.map((a) => a.sent))].join(', ');
    out.push(
      `Let the agents authenticate with a scheme they speak: the proxy asks for ${offered} only and answered 407 to the agents' ${sent} credentials for ${list(r.authSchemes.map((a) => a.endpoint))}. Enable ${sent} on the proxy for these clients (or exempt these hosts from authentication); the credentials themselves were sent.`,
    );
  }
  if (r.leakedProxyAuthorization?.length) {
    out.push(
      `Security: stop passing the agents' Proxy-Authorization header on to the origin: the origin of ${list(r.leakedProxyAuthorization)} received the proxy credentials (anyone running that server can read them). The proxy must consume the header, not forward it; change the proxy passwords that went out. This opens nothing.`,
    );
  }
  if (r.strictConnect?.length) {
    out.push(
      `Answer CONNECT to ${list(r.strictConnect.map((s) => s.endpoint))} with a bare "HTTP/1.1 200" and an empty line: Intel AMT (vPro CIRA) firmware rejects this proxy's answer (${r.strictConnect[0]?.problems.join('; ')}). This opens nothing.`,
    );
  }
  if (r.credentials.length) {
    out.push(
      `Give the agents proxy credentials: the proxy answered 407 for ${list(r.credentials)}. Opening the proxy to unauthenticated clients (an extra allow rule for everyone) is not the fix; configure the agents' proxy user and password (proxycheck: --proxy-user and PROXYCHECK_PROXY_PASSWORD).`,
    );
  }
  for (const problem of r.authProblems ?? []) out.push(problem);
  if (r.lifetimeSeconds !== undefined) {
    out.push(
      `Let CONNECT tunnels live at least ${Math.ceil(r.lifetimeSeconds)} s: something ends them after a fixed time even while traffic flows (a lifetime cap), shorter than the agents' sessions: the proxy's maximum connection or session time, or a firewall's session limit on the way. This opens no port and no host; it only stops cutting sessions short.`,
    );
  }
  if (r.idleInspectedSeconds !== undefined) {
    out.push(
      `Let inspected (TLS-intercepted) connections stay open while silent for more than ${Math.ceil(r.idleInspectedSeconds)} s: the agents are silent that long between keep-alives. This opens no port and no host.`,
    );
  }

  if (r.idleSeconds !== undefined) {
    out.push(
      `Let CONNECT tunnels stay open while silent for more than ${Math.ceil(r.idleSeconds)} s: the agents are silent that long between keep-alives and the proxy's idle timer closed their tunnels earlier. This opens no port and no host.`,
    );
  }
  return out;
}

function hasFix(r: ProxyRemediation): boolean {
  return r.text.length > 0;
}

/** Remediation for every proxy in the report that has something to fix (empty when nothing does). */
export function buildRemediation(report: RunReport, opts: RemediationOptions = {}): ProxyRemediation[] {
  const rows = rowsByEndpoint(opts.scenarios);
  return report.proxies
    .map((p) =>
      forProxy(
        p,
        report.results.filter((r) => r.proxy === p.id),
        rows,
      ),
    )
    .filter(hasFix);
}

/** Adds the optional top-level `remediation` field when there is something to fix. */
export function withRemediation(report: RunReport, opts: RemediationOptions = {}): RunReport {
  const remediation = buildRemediation(report, opts);
  if (remediation.length) report.remediation = remediation;
  return report;
}

export { insertSquidLines, renderRemediation } from './remediation-render.ts';
