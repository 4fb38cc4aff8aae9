/**
 * `connect-response`: the CONNECT answer is exactly what strict firmware (Intel AMT doing CIRA)
 * accepts: `HTTP/1.1 200`, no header lines, no body, nothing glued after the blank line.
 */
import type { ConnectAnswer } from '../agent/tunnel.ts';
import type { CheckDefinition, Verdict } from './types.ts';

export const connectResponse: CheckDefinition = {
  id: 'connect-response',
  title: 'Strict CONNECT answer',
  dependsOn: ['connect'],
  blocks: 'the strict client rejected the CONNECT answer',
  explain: (c) =>
    `The answer to CONNECT ${c.host}:${c.port} is exactly what strict firmware (Intel AMT doing CIRA) accepts: "HTTP/1.1 200", no header lines, no body, nothing glued after the blank line.`,
  remediation: (c) =>
    `Make the proxy answer CONNECT to ${c.host}:${c.port} with a bare "HTTP/1.1 200 Connection established" and an empty line (squid does this by default); turn off added headers (Proxy-Agent, Via, Connection) or HTTP/1.0 answers for CONNECT, and never send bytes before the client speaks.`,
  collectRemedy(results, facts) {
    for (const r of results) {
      if (r.check !== 'connect-response' || r.outcome !== 'fail') continue;
      const problems = Array.isArray(r.evidence.problems) ? r.evidence.problems.map(String) : [r.message];
      facts.strictConnect = [...(facts.strictConnect ?? []), { endpoint: r.endpoint, problems }];
    }
  },
};

/** What a strict client finds wrong with an answer (empty when it accepts it). */
export function strictAnswerProblems(answer: ConnectAnswer): string[] {
  const problems: string[] = [];
  if (answer.httpVersion !== '1.1') problems.push(`answered HTTP/${answer.httpVersion}, not HTTP/1.1`);
  if (answer.statusCode !== 200) problems.push(`status ${answer.statusCode}, not 200`);
  if (answer.lineEndings !== 'CRLF')
    problems.push(`${answer.lineEndings === 'LF' ? 'bare LF' : 'mixed'} line endings, not CRLF`);
  if (answer.headers.length) {
    problems.push(
      `${answer.headers.length} header line(s) after the status line: ${answer.headers.map(([k, v]) => `${k}: ${v}`).join(' | ')}`,
    );
  }
  const bodyHeader = answer.headers.find(([k]) => /^(content-length|transfer-encoding)$/i.test(k));
  if (bodyHeader && !(bodyHeader[0].toLowerCase() === 'content-length' && bodyHeader[1].trim() === '0')) {
    problems.push(`announces a body (${bodyHeader[0]}: ${bodyHeader[1]})`);
  }
  if (answer.extra.length) {
    const shown = answer.extra.subarray(0, 32).toString('latin1');
    problems.push(
      `${answer.extra.length} byte(s) glued to the answer before the client spoke: ${JSON.stringify(shown)}${answer.extra.length > 32 ? '…' : ''}`,
    );
  }
  return problems;
}

export function judgeConnectResponse(answer: ConnectAnswer): Verdict {
  const problems = strictAnswerProblems(answer);
  const answerHead = answer.raw.toString('latin1');
  return problems.length
    ? {
        outcome: 'fail',
        message: `a strict CONNECT client rejects this answer: ${problems.join('; ')}`,
        evidence: { answerHead, problems, gluedBytes: answer.extra.length },
        durationMs: 0,
      }
    : {
        outcome: 'pass',
        message: `clean "${answer.statusLine}" with no header lines, body or glued bytes`,
        evidence: { answerHead },
        durationMs: 0,
      };
}
