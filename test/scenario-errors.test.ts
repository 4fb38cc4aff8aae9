/**
 * Scenario data that names something that does not exist stops the run with exit 2 and one line
 * naming the file and the bad field or value: an option an exchange kind does not take (it would be
 * silently ignored), an expectation rule naming an unknown check, kind, profile or proxy (it would
 * be silently dead).
 */
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { cli } from './helpers/cli.ts';
import { labNet } from './helpers/lab-net.ts';
import { scenarioCopy } from './helpers/scenario-copy.ts';

const REASON = 'a reason long enough for the schema';

const exchangeWith = (extra: string) => `id: extra
title: an exchange with an option
source: [000_77333517a4595425.txt]
exchanges:
  - catalog: testlab
    host: open.proxycheck.test
    port: 443
${extra}
`;

const rule = (match: string, proxy = 'chain-plain') =>
  `proxy: ${proxy}\nrules:\n  - match: ${match}\n    expect: fail\n    reason: ${REASON}\n`;

async function runWith(t: Test, files: Record<string, string>) {
  const dir = scenarioCopy(t, files);
  const r = await cli([
    'run',
    '--scenarios',
    dir,
    '--proxies',
    'chain-plain',
    '--lab-net',
    String(await labNet(t)),
  ]);
  return { ...r, dir };
}

function oneLine(t: Test, stderr: string, ...parts: string[]): void {
  const lines = stderr.trim().split('\n');
  t.equal(lines.length, 1, `one line: ${stderr.trim()}`);
  for (const p of parts) t.ok(lines[0]?.includes(p), `names ${p}`);
  t.notMatch(stderr, /\n\s+at /, 'no stack trace');
}

t.test('failover: on an https exchange is not an option of that kind', async (t) => {
  const r = await runWith(t, {
    'profiles/extra.yaml': exchangeWith(
      '    failover: { port: 8443 }\n    requests:\n      - { name: x, method: GET, path: /echo/x }',
    ),
  });
  t.equal(r.code, 2);
  oneLine(t, r.stderr, join(r.dir, 'profiles', 'extra.yaml'), '/exchanges/0/failover', 'https');
});

t.test('an option the kind needs is missing, and an unknown kind is named', async (t) => {
  const missing = await runWith(t, { 'profiles/extra.yaml': exchangeWith('    userAgent: x') });
  t.equal(missing.code, 2);
  oneLine(t, missing.stderr, 'extra.yaml', 'requests');
  const unknown = await runWith(t, { 'profiles/extra.yaml': exchangeWith('    kind: htps') });
  t.equal(unknown.code, 2);
  oneLine(t, unknown.stderr, 'extra.yaml', '/exchanges/0/kind "htps"');
});

t.test('the same option on the kind that takes it loads (mqtt failover)', async (t) => {
  // fixtures/scenarios-mqtt's profile has failover on its mqtt exchange; loading it is enough here
  const { loadScenarios } = await import('../harness/scenarios.ts');
  const set = loadScenarios({ dir: new URL('../fixtures/scenarios-mqtt/', import.meta.url).pathname });
  t.ok([...set.profiles.values()].some((p) => p.exchanges.some((x) => x.failover)));
});

t.test('an expectation rule naming an unknown check, kind, profile or proxy', async (t) => {
  const cases: Array<[string, string, string]> = [
    ['{ check: conect }', 'chain-plain', '/rules/0/match/check "conect"'],
    ['{ kind: htps }', 'chain-plain', '/rules/0/match/kind "htps"'],
    ['{ profile: nope }', 'chain-plain', '/rules/0/match/profile "nope"'],
    ['{ check: connect }', 'chain-plian', '/proxy "chain-plian"'],
  ];
  for (const [match, proxy, names] of cases) {
    const r = await runWith(t, { [`expectations/${proxy}.yaml`]: rule(match, proxy) });
    t.equal(r.code, 2, match);
    oneLine(t, r.stderr, `expectations/${proxy}.yaml`, names);
  }
});
