/**
 * The release gate, as a release pipeline runs it: every proxy kind × every profile through the
 * CLI, compared with the committed baseline (scenarios/baselines/release.yaml). Exit 0 means no
 * row regressed, went missing, improved or changed since the baseline was written; anything else
 * is listed by the CLI and fails here. After an intended change: rerun with --update-baseline and
 * commit the one-line diffs.
 */
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { PROXY_KINDS } from '../harness/proxies/registry.ts';
import { cli } from './helpers/cli.ts';
import { requireComponent, squidProblem } from './helpers/requirements.ts';

const BASELINE = fileURLToPath(new URL('../scenarios/baselines/release.yaml', import.meta.url));
const squid = requireComponent(t, 'squid', squidProblem());

t.test(
  'every proxy kind and profile matches the committed release baseline',
  { ...squid, timeout: 580_000 },
  async (t) => {
    const r = await cli(
      [
        'run',
        '--proxies',
        PROXY_KINDS.map((k) => k.id).join(','),
        '--profiles',
        'all',
        '--runtime',
        'process',
        '--lab-net',
        '190',
        '--baseline',
        BASELINE,
        '--quiet',
      ],
      { timeoutMs: 570_000 },
    );
    t.equal(r.code, 0, `exit ${r.code}\n${r.stdout.slice(-3000)}\n${r.stderr.slice(-2000)}`);
    t.match(r.stdout, /0 regressed/);
    t.match(r.stdout, /2624 results: .* 2624 as expected, 0 not/);
  },
);
