/** `connect`: the proxy opens a CONNECT tunnel and answers 2xx. Judged from the tunnel the route opened. */
import { type ConnectAnswer, refusalDetail, type TunnelResult } from '../agent/tunnel.ts';
import { parseEndpoint } from '../model.ts';
import { redactChallengeHead } from '../route/auth.ts';
import {
  type CheckDefinition,
  isConnectResult,
  PROXY_CREDENTIALS_REMEDY,
  str,
  type Verdict,
} from './types.ts';

export const connect: CheckDefinition = {
  id: 'connect',
  title: 'CONNECT tunnel',
  dependsOn: [],
  blocks: 'the CONNECT tunnel was not established',
  explain: (c) => `The proxy opens a CONNECT tunnel to ${c.host}:${c.port} and answers with a 2xx status.`,
  remediation(ctx, v) {
    // a refusal inside an inspected session counts as the refusal it is
    const status = Number(v.evidence.insideStatusCode ?? v.evidence.statusCode ?? 0);
    if (status === 407) return PROXY_CREDENTIALS_REMEDY;
    if (status === 403) {
      return `Allow CONNECT to ${ctx.host} on port ${ctx.port}: the proxy's list of ports CONNECT may reach must include it (squid: acl SSL_ports port ${ctx.port}, so "http_access deny CONNECT !SSL_ports" lets it through).`;
    }
    if (v.evidence.errorCode === 'ENOTFOUND')
      return "The proxy's host name does not resolve on the agent's machine: use a name its DNS knows (or the proxy's address) in the agent's proxy settings.";
    if (v.evidence.errorCode === 'ECONNREFUSED' || v.evidence.errorCode === 'PC_DEADLINE') {
      return 'The proxy could not be reached: check its address and port, and that the agent host may connect to it.';
    }
    return `Make the proxy tunnel CONNECT ${ctx.host}:${ctx.port} to the origin and answer "HTTP/1.1 200".`;
  },
  // 407: credentials; 403 on a port where nothing went through: the port; else the host
  collectRemedy(results, facts) {
    const portOf = (endpoint: string) => parseEndpoint(endpoint).port;
    const passedPorts = new Set(
      results.filter((r) => isConnectResult(r) && r.outcome === 'pass').map((r) => portOf(r.endpoint)),
    );
    const refused = new Map<number, string[]>();
    for (const r of results.filter((x) => x.outcome === 'fail' && isConnectResult(x))) {
      const status = Number(r.evidence.insideStatusCode ?? r.evidence.statusCode ?? 0);
      if (status === 407) {
        // credentials were sent and still 407: the proxy wants a scheme the agent does not speak
        const sent = /^Proxy-Authorization: *(\S+)/im.exec(str(r.evidence.request))?.[1];
        const offered = [...str(r.evidence.answerHead).matchAll(/^Proxy-Authenticate: *([^\s,]+)/gim)].map(
          (m) => m[1] ?? '',
        );
        if (sent && offered.length && !offered.some((o) => o.toLowerCase() === sent.toLowerCase()))
          facts.authSchemes = [
            ...(facts.authSchemes ?? []),
            { endpoint: r.endpoint, offered: [...new Set(offered)], sent },
          ];
        else facts.credentials.push(r.endpoint);
      }
      if (status !== 403) continue;
      const port = portOf(r.endpoint);
      if (passedPorts.has(port)) facts.refusedEndpoints.push(r.endpoint);
      else refused.set(port, [...(refused.get(port) ?? []), r.endpoint]);
    }
    facts.connectPorts = [...refused]
      .sort(([a], [b]) => a - b)
      .map(([port, endpoints]) => ({ port, endpoints: [...new Set(endpoints)] }));
  },
};

/** The proxy's CONNECT answer as evidence: status, the exact head, bytes glued after it. */
export function answerEvidence(answer: ConnectAnswer | undefined): Record<string, unknown> {
  if (!answer) return {};
  const refused = answer.statusCode < 200 || answer.statusCode >= 300;
  return {
    statusLine: answer.statusLine,
    statusCode: answer.statusCode,
    answerHead: redactChallengeHead(answer.raw.toString('latin1')),
    ...(refused
      ? { answerBody: answer.extra.subarray(0, 1024).toString('latin1'), ...refusingHop(answer) }
      : { gluedBytes: answer.extra.length }),
    ...(answer.lineEndings !== 'CRLF' ? { lineEndings: answer.lineEndings } : {}),
    ...(answer.truncated ? { truncated: true } : {}),
  };
}

/**
 * Which hop of a chain wrote a refusal: the proxy named by its `X-Cache-Lookup` / `X-Cache`
 * ("NONE from <name>:<port>", squid), or the parent when proxy-chain relays its refusal
 * ("590 UPSTREAM403"), and the hops it came back through (`Via`).
 */
export function refusingHop(answer: ConnectAnswer): { refusedBy?: string; via?: string } {
  const header = (name: RegExp) => answer.headers.find(([k]) => name.test(k))?.[1];
  const from = / from (\S+)\s*$/.exec(header(/^x-cache-lookup$/i) ?? header(/^x-cache$/i) ?? '')?.[1];
  const via = header(/^via$/i);
  // proxy-chain relays its parent's refusal as "590 UPSTREAM<status>"
  const upstream = /^UPSTREAM(\d{3})$/.exec(answer.reason)?.[1];
  const by =
    from ??
    (upstream ? `the parent proxy (it answered ${upstream}; relayed as "${answer.statusLine}")` : undefined);
  return { ...(by ? { refusedBy: by } : {}), ...(via ? { via } : {}) };
}

/** `CONNECT h:p answered "HTTP/1.1 403 Forbidden", not 200 (X-Squid-Error: ERR_ACCESS_DENIED 0)` */
export function refusedMessage(target: string, answer: ConnectAnswer, dialled?: { port: number }): string {
  const detail = refusalDetail(answer);
  const how = [
    ...(answer.lineEndings === 'LF' ? ['with bare LF line endings'] : []),
    ...(answer.truncated ? ['cut short before the end of its head'] : []),
  ];
  const hop = chainedHop(answer, dialled);
  return `CONNECT ${target} answered "${answer.statusLine}"${how.length ? ` (${how.join(', ')})` : ''}, not 200${detail ? ` (${detail})` : ''}${hop ? `; refused by ${hop}` : ''}`;
}

/**
 * The hop that refused, when it is not the proxy the agent dialled: squid's "NONE from
 * <name>:<port>" on another port than the one dialled, a `Via` with several entries, or
 * proxy-chain's relayed "590 UPSTREAM403". The message names it, since "the proxy" would then be
 * the wrong one; a refusal by the proxy dialled names no hop.
 */
function chainedHop(answer: ConnectAnswer, dialled?: { port: number }): string | undefined {
  const { refusedBy, via } = refusingHop(answer);
  if (!refusedBy) return undefined;
  const fromPort = Number(/:(\d+)$/.exec(refusedBy)?.[1]);
  const otherPort = dialled !== undefined && fromPort > 0 && fromPort !== dialled.port;
  const hops = via ? via.split(',').filter((h) => h.trim()).length : 0;
  return otherPort || hops >= 2 || /^UPSTREAM\d{3}$/.test(answer.reason) ? refusedBy : undefined;
}

/** The `connect` verdict for one CONNECT attempt. */
export function judgeConnect(
  target: string,
  tunnel: TunnelResult,
  durationMs: number,
  /** The proxy the agent dialled, to tell its own refusal from a hop's behind it. */
  dialled?: { port: number },
): Verdict {
  const common = { request: tunnel.requestHead, timings: tunnel.timings, ...answerEvidence(tunnel.answer) };
  if (!tunnel.ok) {
    return {
      outcome: 'fail',
      message: tunnel.answer
        ? refusedMessage(target, tunnel.answer, dialled)
        : `CONNECT ${target} failed: ${tunnel.error}`,
      evidence: { ...common, ...(tunnel.errorCode ? { errorCode: tunnel.errorCode } : {}) },
      durationMs,
    };
  }
  return {
    outcome: 'pass',
    message: `CONNECT ${target} answered "${tunnel.answer.statusLine}"`,
    evidence: common,
    durationMs,
  };
}
