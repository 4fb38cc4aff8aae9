/**
 * The release gate, as a release pipeline runs it: every proxy kind × every profile through the
 * CLI, compared with the committed baseline (scenarios/baselines/release.yaml). Exit 0 means no
 * row regressed, went missing, improved or changed since the baseline was written; anything else
 * is listed by the CLI and fails here. After an intended change: rerun with --update-baseline and
 * commit the one-line diffs.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { proxyIds } from '../harness/proxies/registry.ts';
import { parseBaseline } from '../harness/runner/baseline.ts';
import { loadScenarios } from '../harness/scenarios.ts';
import { cli } from './helpers/cli.ts';
import { expectedResults } from './helpers/counts.ts';
import { labNet } from './helpers/lab-net.ts';
import { requireComponent, squidProblem } from './helpers/requirements.ts';

const BASELINE = fileURLToPath(new URL('../scenarios/baselines/release.yaml', import.meta.url));
const squid = requireComponent(t, 'squid', squidProblem());

t.test(
  'every proxy kind and profile matches the committed release baseline',
  { ...squid, timeout: 580_000 },
  async (t) => {
    const proxies = proxyIds();
    // every proxy kind x every profile: per proxy, the checks the kinds list for each exchange
    const total = expectedResults(loadScenarios(), proxies);
    const rows = parseBaseline(readFileSync(BASELINE, 'utf8'), BASELINE);
    t.equal(rows.size, total, 'the committed baseline has a row per result of the scenarios');
    const r = await cli(
      [
        'run',
        '--proxies',
        proxies.join(','),
        '--profiles',
        'all',
        '--runtime',
        'process',
        '--lab-net',
        String(await labNet(t)),
        '--baseline',
        BASELINE,
        '--quiet',
      ],
      { timeoutMs: 570_000 },
    );
    t.equal(r.code, 0, `exit ${r.code}\n${r.stdout.slice(-3000)}\n${r.stderr.slice(-2000)}`);
    t.match(r.stdout, /0 regressed/);
    t.match(r.stdout, new RegExp(`${total} results: .* ${total} as expected, 0 not`));
  },
);
