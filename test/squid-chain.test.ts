import t from 'tap';
import { openTunnel } from '../harness/agent/tunnel.ts';
import { judgeConnect } from '../harness/checks/connect.ts';
import { engineFor } from '../harness/proxies/engines.ts';
import { loadScenarios } from '../harness/scenarios.ts';
import { runPassing } from './helpers/cli.ts';
import { startProxy, testLab } from './helpers/fixtures.ts';
import { labNet } from './helpers/lab-net.ts';
import { requireComponent, squidProblem } from './helpers/requirements.ts';

const squid = requireComponent(t, 'squid', squidProblem());

t.test('a port the child allows and the parent refuses is refused', squid, async (t) => {
  const host = 'origin.proxycheck.test';
  const { lab, runDir } = await testLab(t, await labNet(t), [
    {
      host,
      ports: [
        { port: 443, transport: 'https' },
        { port: 5223, transport: 'tls' },
      ],
    },
  ]);
  const set = loadScenarios();
  const child = { id: 't-child', engine: 'squid' as const, connectPorts: 'any' as const, file: 'test' };
  const alone = await startProxy(t, engineFor(child, set, 'process'), lab, runDir);
  const chained = await startProxy(
    t,
    engineFor({ ...child, parent: 'squid-default' }, set, 'process'),
    lab,
    runDir,
  );
  t.match(chained.version, /-> parent squid-default/);
  const at = (p: { host: string; port: number }) => ({ host: p.host, port: p.port });
  const direct = await openTunnel({ proxy: at(alone), target: { host, port: 5223 } });
  t.ok(direct.ok, 'the child alone tunnels to 5223');
  if (direct.ok) direct.socket.destroy();
  const ok = await openTunnel({ proxy: at(chained), target: { host, port: 443 } });
  t.ok(ok.ok, ok.ok ? 'through the chain to 443' : (ok.error ?? ''));
  if (ok.ok) ok.socket.destroy();
  const refused = await openTunnel({ proxy: at(chained), target: { host, port: 5223 } });
  t.notOk(refused.ok, 'through the chain, 5223 is refused by the parent');
  const answer = refused.ok ? undefined : refused.answer;
  t.equal(answer?.statusCode, 403);
  const lookup = answer?.headers.find(([k]) => /^x-cache-lookup$/i.test(k))?.[1] ?? '';
  const hop = Number(/:(\d+)$/.exec(lookup)?.[1]);
  t.ok(hop > 0 && hop !== chained.port, `the refusal comes from another squid than the child (${lookup})`);
  // the connect verdict names that hop in its evidence
  const verdict = judgeConnect(`${host}:5223`, refused, 0, { port: chained.port });
  t.equal(verdict.outcome, 'fail');
  t.equal(verdict.evidence?.refusedBy, `proxycheck-squid:${hop}`, 'refusedBy names the parent');
  t.match(
    verdict.message,
    `; refused by proxycheck-squid:${hop}`,
    `and so does the message: ${verdict.evidence?.answerHead}`,
  );
  const own = await openTunnel({ proxy: at(chained), target: { host, port: 25 } });
  const ownVerdict = judgeConnect(`${host}:25`, own, 0, { port: chained.port });
  t.match(
    ownVerdict.evidence?.refusedBy,
    /^proxycheck-squid-child:/,
    "a port the child refuses: the child's name",
  );
  t.notMatch(ownVerdict.message, /refused by/, 'the proxy the agent speaks to refused: no hop to name');
});

t.test('the built-in squid-chain passes the flexxagent profile', squid, async (t) => {
  await runPassing(t, {
    proxies: ['squid-chain'],
    profiles: 'flexxagent',
    runtime: 'process',
    labNet: await labNet(t),
  });
});

t.test('a parent that is not a definition, or cannot be one, is one line', async (t) => {
  const set = loadScenarios();
  const base = { id: 't-child', engine: 'squid' as const, file: 'child.yaml' };
  t.throws(
    () => engineFor({ ...base, parent: 'nope' }, set),
    /^child\.yaml: parent nope is not a definition$/,
  );
  t.throws(
    () => engineFor({ ...base, parent: 'down-pac' }, set),
    /parent down-pac must be another proxy that is up/,
  );
  t.throws(() => engineFor({ ...base, parent: 'squid-chain' }, set), /with no parent, client network or tls/);
});
