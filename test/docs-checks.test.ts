/**
 * docs/checks.md is generated from the check definitions (scripts/checks-doc.ts): a check added or
 * changed without regenerating the page fails here, so CI catches a stale page.
 */
import { readFileSync } from 'node:fs';
import t from 'tap';
import { CHECKS_DOC_PATH, renderChecksDoc } from '../scripts/checks-doc.ts';

t.test('docs/checks.md is what scripts/checks-doc.ts generates', async (t) => {
  const onDisk = readFileSync(CHECKS_DOC_PATH, 'utf8');
  const fresh = renderChecksDoc();
  if (onDisk === fresh) {
    t.pass('docs/checks.md is up to date');
    return;
  }
  const a = onDisk.split('\n');
  const b = fresh.split('\n');
  let line = 0;
  while (line < a.length && a[line] === b[line]) line++;
  t.fail(`docs/checks.md is stale: run npm run docs:checks (first difference at line ${line + 1})`, {
    found: a[line],
    wanted: b[line],
  });
});

t.test('every check has its section, in report order', async (t) => {
  const { CHECK_ORDER } = await import('../harness/checks/index.ts');
  const doc = renderChecksDoc();
  const positions = CHECK_ORDER.map((id) => doc.indexOf(`### \`${id}\``));
  t.notOk(positions.includes(-1), 'every check id has a heading');
  t.same(
    positions,
    [...positions].sort((x, y) => x - y),
    'headings in CHECK_ORDER',
  );
});
