/**
 * The HTML report of a real run (chain-plain and chain-mitm, FlexxAgent), opened from file:// in
 * headless Chromium: one column per proxy, one row per endpoint check, a failing cell shows its
 * message and remedy when opened, the page fetches nothing, and it renders to a non-blank picture.
 * Chromium is the Debian package (/usr/bin/chromium), driven by playwright-core; no browser download.
 */
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { type Browser, chromium, type Page } from 'playwright-core';
import t, { type Test } from 'tap';
import { type CheckResult, type RunReport, summarize } from '../harness/model.ts';
import { withGoLive } from '../harness/report/golive.ts';
import { renderHtml } from '../harness/report/html.ts';
import { runMatrix } from '../harness/runner/run.ts';
import { labNet } from './helpers/lab-net.ts';
import { requireComponent } from './helpers/requirements.ts';

const CHROMIUM = process.env.PROXYCHECK_CHROMIUM ?? '/usr/bin/chromium';

function chromiumProblem(): string | undefined {
  return existsSync(CHROMIUM)
    ? undefined
    : `no ${CHROMIUM} (apt-get install chromium, or set PROXYCHECK_CHROMIUM)`;
}

/** A browser page that records every request and refuses (and remembers) any not from file://. */
async function guardedPage(t: Test, browser: Browser) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  t.teardown(() => context.close());
  const page = await context.newPage();
  const requests: string[] = [];
  const offPage: string[] = [];
  const consoleErrors: string[] = [];
  page.on('request', (r) => requests.push(r.url()));
  page.on('console', (m) => {
    if (m.type() === 'error') consoleErrors.push(m.text());
  });
  page.on('pageerror', (e) => consoleErrors.push(e.message));
  await page.route('**/*', (route) => {
    const url = route.request().url();
    if (url.startsWith('file://')) return route.continue();
    offPage.push(url);
    return route.abort('blockedbyclient');
  });
  return { page, requests, offPage, consoleErrors };
}

/** The few DOM types the in-page code below uses (tsconfig has no "dom" lib). */
interface PageGlobals {
  Image: new () => { src: string; decode(): Promise<void>; naturalWidth: number; naturalHeight: number };
  document: {
    createElement(tag: 'canvas'): {
      width: number;
      height: number;
      getContext(kind: '2d'): {
        drawImage(img: unknown, x: number, y: number): void;
        getImageData(x: number, y: number, w: number, h: number): { data: Uint8ClampedArray };
      } | null;
    };
  };
}

/** Distinct colours and size of a PNG, decoded by the browser itself on a blank page. */
async function pictureStats(page: Page, png: Buffer) {
  return page.evaluate(async (b64) => {
    const { Image, document } = globalThis as unknown as PageGlobals;
    const img = new Image();
    img.src = `data:image/png;base64,${b64}`;
    await img.decode();
    const canvas = document.createElement('canvas');
    canvas.width = img.naturalWidth;
    canvas.height = img.naturalHeight;
    const ctx = canvas.getContext('2d');
    if (!ctx) throw new Error('no 2d context');
    ctx.drawImage(img, 0, 0);
    const data = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
    const colours = new Set<number>();
    let nonWhite = 0;
    for (let i = 0; i < data.length; i += 4 * 7) {
      const [r = 0, g = 0, b = 0] = [data[i], data[i + 1], data[i + 2]];
      colours.add((r << 16) | (g << 8) | b);
      if (r + g + b < 3 * 250) nonWhite += 1;
    }
    return { width: canvas.width, height: canvas.height, colours: colours.size, nonWhite };
  }, png.toString('base64'));
}

t.test('HTML report in headless Chromium', async (t) => {
  const skip = requireComponent(t, 'chromium', chromiumProblem());
  let launched: Browser | undefined;
  const browser = async () => {
    if (!launched) {
      launched = await chromium.launch({ executablePath: CHROMIUM });
      const b = launched;
      t.teardown(() => b.close());
    }
    return launched;
  };
  await t.test(
    'a real run: matrix, cells, no fetches, screenshot',
    { ...skip, timeout: 180_000 },
    async (t) => {
      const report: RunReport = withGoLive(
        await runMatrix({
          proxies: ['chain-plain', 'chain-mitm'],
          profiles: ['flexxagent'],
          labNet: await labNet(t),
        }),
      );
      const dir = mkdtempSync(join(tmpdir(), 'proxycheck-html-'));
      t.teardown(() => rmSync(dir, { recursive: true, force: true }));
      const file = join(dir, 'report.html');
      writeFileSync(file, renderHtml(report));

      const { page, requests, offPage, consoleErrors } = await guardedPage(t, await browser());
      const url = pathToFileURL(file).href;
      await page.goto(url, { waitUntil: 'load' });

      // Summary: counts per outcome and the proxies, straight from the report.
      for (const o of ['pass', 'fail', 'dependency_fail'] as const) {
        const n = report.results.filter((r) => r.outcome === o).length;
        t.equal(
          (await page.locator(`#counts tr[data-outcome="${o}"] td.num`).textContent())?.trim(),
          String(n),
          `${o} count`,
        );
      }
      t.equal(
        (await page.locator('#counts [data-count="unmatched"]').textContent())?.trim(),
        String(report.summary.unmatched),
      );
      for (const p of report.proxies) {
        const row = page.locator(`#proxies tr[data-proxy="${p.id}"]`);
        t.match(
          await row.textContent(),
          new RegExp(`${p.kind}.*${p.runtime}.*${p.version}`),
          `proxy ${p.id}`,
        );
      }
      t.match(
        await page.locator('#proxies tr[data-proxy="chain-mitm"]').textContent(),
        /proxy-chain \(Node\.js\) [\d.]+ \(high\)/,
        'the product named in the proxies table',
      );
      t.match(await page.locator('#run-meta').textContent(), `proxycheck ${report.tool.version}`);
      t.ok((await page.locator('#legend li').count()) >= 7, 'a legend entry per outcome');
      // What to change: chain-mitm must stop inspecting the FlexxAgent hosts; chain-plain needs nothing.
      const fix = page.locator('#remediation .fix[data-proxy="chain-mitm"]');
      t.ok(await fix.isVisible(), 'the remediation section names chain-mitm');
      t.match(await fix.textContent(), /west-eu\.agent-api\.analyzer\.flexxible\.com/);
      t.match(await fix.textContent(), /proxycheck Corporate Inspection CA/);
      t.equal(await page.locator('#remediation .fix[data-proxy="chain-plain"]').count(), 0);

      // The page opens with a verdict per agent and the findings, the matrix below them.
      const sections = await page.locator('body > section').evaluateAll((ss) => ss.map((x) => x.id));
      t.same(
        sections.slice(0, 2),
        ['agents', 'findings'],
        `verdicts and findings first: ${sections.join(', ')}`,
      );
      const verdict = (proxy: string) =>
        page.locator(`#agents tr[data-agent="flexxagent"][data-proxy="${proxy}"]`);
      t.equal(await verdict('chain-plain').getAttribute('data-verdict'), 'go');
      t.match(
        await verdict('chain-plain').textContent(),
        /go.*flexxagent.*proxy-chain.*all \d+ checks that ran passed/,
      );
      t.equal(await verdict('chain-mitm').getAttribute('data-verdict'), 'no-go');
      t.match(await verdict('chain-mitm').textContent(), /no-go.*TLS inspected on .*flexxible\.com/);
      const inspection = page.locator('#findings .finding[data-finding="chain-mitm/inspection"]');
      t.ok(await inspection.isVisible(), 'the inspection finding of chain-mitm');
      t.match(await inspection.textContent(), /\[blocker\].*Exclude from TLS inspection/);
      const top = async (sel: string) => (await page.locator(sel).boundingBox())?.y ?? -1;
      t.ok((await top('#agents')) < (await top('#matrix')), 'the verdicts are above the matrix');

      // The matrix: a column per proxy, a row per endpoint check (profile + endpoint + check).
      const columns = await page
        .locator('#matrix thead th.proxy')
        .evaluateAll((ths) => ths.map((th) => th.getAttribute('data-proxy')));
      t.same(
        columns,
        report.proxies.map((p) => p.id),
      );
      const endpointChecks = new Set(report.results.map((r) => `${r.profile}/${r.endpoint}/${r.check}`));
      const rows = await page
        .locator('#matrix tbody tr.check')
        .evaluateAll((trs) => trs.map((tr) => tr.getAttribute('data-row')));
      t.same(rows, [...endpointChecks], 'one row per endpoint check, in report order');
      t.equal(await page.locator('#matrix tbody td.cell').count(), rows.length * columns.length);

      // A known failing cell: chain-mitm re-signs the FlexxAgent host, which must not be inspected.
      const failing = report.results.find(
        (r: CheckResult) => r.proxy === 'chain-mitm' && r.check === 'tls-interception',
      );
      t.ok(failing, 'chain-mitm has a tls-interception result');
      if (!failing) return;
      t.equal(failing.outcome, 'fail', failing.message);
      const cell = page.locator(`td[id="${failing.id}"]`);
      const message = cell.locator('.message');
      t.notOk(await message.isVisible(), 'collapsed at first');
      await cell.locator(':scope > details > summary').click();
      t.ok(await message.isVisible(), 'message visible once opened');
      t.equal(await message.textContent(), failing.message);
      t.ok(failing.remediation, 'the failure has a remedy');
      t.equal(await cell.locator('.remediation').textContent(), `Remedy: ${failing.remediation}`);
      t.ok(await cell.locator('.remediation').isVisible());
      t.match(await cell.locator('.expectation').textContent(), failing.expectedReason ?? 'As expected');
      const evidence = cell.locator('details.evidence pre');
      t.notOk(await evidence.isVisible(), 'evidence is collapsed inside the open cell');
      await cell.locator('details.evidence > summary').click();
      t.same(JSON.parse((await evidence.textContent()) ?? ''), failing.evidence, 'evidence is the JSON');
      const box = await cell.boundingBox();
      t.ok(box && box.width > 100 && box.height > 50, `opened cell has a size: ${JSON.stringify(box)}`);

      // The inline script ran under the page's own Content-Security-Policy.
      t.ok(await page.locator('#controls').isVisible(), 'script revealed the controls');
      await page.locator('#expand-all').click();
      t.equal(
        await page.locator('td.cell > details[open]').count(),
        report.results.length,
        'expand all opens every cell',
      );

      const shot = await page.screenshot({ fullPage: true });
      const blank = await (await browser()).newPage();
      t.teardown(() => blank.close());
      const stats = await pictureStats(blank, shot);
      t.ok(stats.width >= 1000 && stats.height >= 900, `screenshot size ${stats.width}x${stats.height}`);
      t.ok(stats.colours > 20, `screenshot has ${stats.colours} colours, not a blank page`);
      t.ok(stats.nonWhite > 1000, `${stats.nonWhite} sampled pixels are not white`);

      t.same(offPage, [], 'no request left the page');
      t.same(requests, [url], 'the only request was the report itself');
      t.same(consoleErrors, [], 'no console errors (CSP violations would show here)');
    },
  );

  await t.test('everything from the report is escaped', skip, async (t) => {
    const hostile =
      '<script>document.title="pwned"</script><img src=x onerror=alert(1)> & "q" \'a\' ]]> </pre>';
    const result: CheckResult = {
      id: 'p"><b>x/prof/evil.test:443/odd-check',
      proxy: 'p"><b>x',
      profile: 'prof',
      endpoint: 'evil.test:443',
      check: 'odd-check',
      outcome: 'fail',
      expected: 'pass',
      matched: false,
      message: `${hostile} ctl:\u0001\u001b end`,
      evidence: { html: hostile, nested: { text: '</details></td></tr><tr><td>' } },
      remediation: `fix ${hostile}`,
      durationMs: 1,
    };
    const report: RunReport = {
      schema: 'proxycheck/result@2',
      startedAt: new Date(0).toISOString(),
      finishedAt: new Date(1000).toISOString(),
      tool: { name: 'proxycheck', version: '0.0.0-test' },
      proxies: [{ id: result.proxy, kind: '<i>k</i>', runtime: 'r&d', version: '"v"' }],
      results: [result],
      summary: summarize([result]),
    };
    const dir = mkdtempSync(join(tmpdir(), 'proxycheck-html-'));
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    const file = join(dir, 'hostile.html');
    writeFileSync(file, renderHtml(report));
    const { page, offPage, consoleErrors } = await guardedPage(t, await browser());
    const dialogs: string[] = [];
    page.on('dialog', (d) => {
      dialogs.push(d.message());
      void d.dismiss();
    });
    await page.goto(pathToFileURL(file).href, { waitUntil: 'load' });
    t.equal(await page.locator('script').count(), 1, 'only our own script element');
    t.equal(await page.locator('img, i, [onerror]').count(), 0, 'no element made from report text');
    t.equal(await page.locator('#matrix thead b, #proxies b').count(), 0, 'no <b> from the proxy id');
    t.match(await page.locator('#proxies').textContent(), '<i>k</i>');
    t.notMatch(await page.title(), 'pwned');
    t.same(
      await page
        .locator('#matrix thead th.proxy')
        .evaluateAll((x) => x.map((e) => e.getAttribute('data-proxy'))),
      [result.proxy],
    );
    const cell = page.locator('td.cell');
    t.equal(await cell.getAttribute('id'), result.id);
    await cell.locator(':scope > details > summary').click();
    t.equal(
      await cell.locator('.message').textContent(),
      `${hostile} ctl:\\u0001\\u001b end`,
      'text shown as written; control characters as visible escapes',
    );
    t.equal(await cell.locator('.remediation').textContent(), `Remedy: fix ${hostile}`);
    t.same(JSON.parse((await cell.locator('details.evidence pre').textContent()) ?? ''), result.evidence);
    t.same(dialogs, []);
    t.same(offPage, []);
    t.same(consoleErrors, []);
  });

  await t.test('the request guard catches a page that fetches', skip, async (t) => {
    // Proves the "no request left the page" assertion above can fail.
    const dir = mkdtempSync(join(tmpdir(), 'proxycheck-html-'));
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    const file = join(dir, 'leaky.html');
    const net = await labNet(t); // a lab address of this test's own, where nothing listens on port 9
    writeFileSync(file, `<!doctype html><img src="http://127.${net}.0.1:9/pixel.png">`);
    const { page, offPage } = await guardedPage(t, await browser());
    await page.goto(pathToFileURL(file).href, { waitUntil: 'load' });
    t.same(offPage, [`http://127.${net}.0.1:9/pixel.png`]);
  });
});
