/**
 * One self-contained HTML page: the agent verdicts and the findings by root cause first, then the
 * summary, what to change per proxy, the legend, and the matrix (rows = endpoint checks, i.e.
 * profile + endpoint + check; columns = proxies), after the cache-tests results page. Each cell is
 * a <details> holding the message, the expectation, the remediation and the evidence (pretty
 * JSON, itself collapsible), so the page works without JavaScript; the small inline script only
 * adds "expand all" and "only unexpected". CSS and JS are inline and allowed by hash in a
 * Content-Security-Policy of default-src 'none', so the page cannot fetch anything. Every string
 * from the report is HTML-escaped; none is placed inside <script>.
 */
import { createHash } from 'node:crypto';
import { CHECKS } from '../checks/index.ts';
import { type CheckResult, OUTCOMES, type Outcome, type ProxyInfo, type RunReport } from '../model.ts';
import { checkTitle, disposition, evidenceJson, proxyOrder, visibleControls } from './disposition.ts';
import { productLine } from './remediation-render.ts';

/** Glyphs, colours and meanings belong here, in the renderer, not in the result model. */
const LOOK: Record<Outcome, { glyph: string; meaning: string }> = {
  pass: { glyph: '✓', meaning: 'the check ran and the proxy behaved' },
  fail: { glyph: '✗', meaning: 'the check ran and the proxy breaks the agent' },
  warn: { glyph: '⚠', meaning: 'the check ran; the proxy does something the vendor advises against' },
  skip: { glyph: '–', meaning: 'the check does not apply here (reason in the cell)' },
  dependency_fail: { glyph: '↳', meaning: 'not run: a check it depends on did not pass' },
  setup_fail: { glyph: '⚙', meaning: 'not run: our lab or a proxy we start did not come up' },
  harness_fail: { glyph: '‼', meaning: 'not run: a bug in proxycheck' },
};

const CSS = `
:root{--fg:#1f2328;--muted:#59636e;--line:#d1d9e0;--bg:#fff;--head:#f6f8fa;
--pass:#dafbe1;--pass-fg:#116329;--fail:#ffebe9;--fail-fg:#a40e26;--warn:#fff8c5;--warn-fg:#7d4e00;
--skip:#f6f8fa;--skip-fg:#59636e;--dependency_fail:#eef0f3;--dependency_fail-fg:#6e4ea8;
--setup_fail:#fff1e5;--setup_fail-fg:#953800;--harness_fail:#ffd8f0;--harness_fail-fg:#7a1457;--bad:#cf222e}
*{box-sizing:border-box}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;color:var(--fg);background:var(--bg);margin:0;padding:1.2em 1.6em}
h1{font-size:1.6em;margin:0 0 .3em}h2{font-size:1.2em;margin:1.4em 0 .5em;border-bottom:1px solid var(--line);padding-bottom:.2em}
code,pre{font:12px/1.4 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
.verdict{display:inline-block;font-weight:600;padding:.3em .8em;border-radius:6px;margin:.2em 0 .6em}
.verdict.ok{background:var(--pass);color:var(--pass-fg)}.verdict.bad{background:var(--fail);color:var(--fail-fg);border:2px solid var(--bad)}
.meta{color:var(--muted);margin:0}.meta span+span::before{content:" · "}
table{border-collapse:collapse}th,td{border:1px solid var(--line);padding:.3em .55em;text-align:left;vertical-align:top}
thead th{background:var(--head)}.num{text-align:right;font-variant-numeric:tabular-nums}
.side{display:flex;flex-wrap:wrap;gap:1.5em;align-items:flex-start}
.chip{display:inline-block;min-width:1.6em;text-align:center;border-radius:4px;padding:0 .3em;font-weight:700}
${OUTCOMES.map((o) => `.o-${o} .chip,.chip.o-${o},td.o-${o}{background:var(--${o});color:var(--${o}-fg)}`).join('\n')}
.legend{list-style:none;padding:0;margin:0;columns:2 26em}.legend li{margin:.15em 0;break-inside:avoid}
.unexpected{outline:3px solid var(--bad);outline-offset:-3px}
.tag{font-size:.8em;font-weight:600;border-radius:3px;padding:0 .3em;margin-left:.3em;white-space:nowrap}
.tag.unexp{background:var(--bad);color:#fff}.tag.exp{border:1px dashed currentColor}
table.matrix th[scope=row]{background:var(--bg);font-weight:500;min-width:12em}
table.matrix th[scope=row] code{color:var(--muted);display:block}
table.matrix tr.group th{background:var(--head);font-weight:600}
table.matrix thead th.proxy{min-width:11em}table.matrix thead small{display:block;font-weight:400;color:var(--muted)}
td.cell{min-width:11em;max-width:34em}td.cell.none{color:var(--muted);font-style:italic}
td.cell summary{cursor:pointer;font-weight:600;list-style-position:inside}
td.cell .body{font-weight:400;margin-top:.4em}td.cell .body p{margin:.25em 0}
.message{white-space:pre-wrap;overflow-wrap:anywhere}.remediation{white-space:pre-wrap;overflow-wrap:anywhere}
.evidence pre{background:#f6f8fa;border:1px solid var(--line);padding:.5em;max-height:24em;overflow:auto;white-space:pre-wrap;overflow-wrap:anywhere;margin:.3em 0}
.controls{margin:.3em 0 .7em}.controls button{margin-left:.6em}
table.agents td.v{font-weight:700;white-space:nowrap}td.v-go{background:var(--pass);color:var(--pass-fg)}
td.v-no-go{background:var(--fail);color:var(--fail-fg)}td.v-at-risk{background:var(--warn);color:var(--warn-fg)}
.finding{border-left:4px solid var(--line);padding:.2em .8em;margin:.6em 0}.finding h3{font-size:1em;margin:.2em 0}
.finding.s-blocker{border-color:var(--bad)}.finding.s-security{border-color:#8250df}.finding.s-degraded{border-color:var(--warn-fg)}
.finding pre{background:#f6f8fa;border:1px solid var(--line);padding:.4em;margin:.2em 0}
body.only-unexpected tr.check:not(.has-unexpected){display:none}
`;

const SCRIPT = `
(function(){
  var c=document.getElementById('controls');if(!c)return;c.hidden=false;
  function all(open){document.querySelectorAll('td.cell details').forEach(function(d){d.open=open;});}
  document.getElementById('expand-all').addEventListener('click',function(){all(true);});
  document.getElementById('collapse-all').addEventListener('click',function(){all(false);});
  document.getElementById('only-unexpected').addEventListener('change',function(e){
    document.body.classList.toggle('only-unexpected',e.target.checked);});
  var h=decodeURIComponent(location.hash.slice(1));
  if(h){var t=document.getElementById(h);if(t){var d=t.querySelector('details');if(d)d.open=true;t.scrollIntoView();}}
})();
`;

function esc(s: string | number | undefined): string {
  return visibleControls(String(s ?? '')).replace(
    /[&<>"']/g,
    (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c] ?? c,
  );
}

function sha256(s: string): string {
  return `'sha256-${createHash('sha256').update(s, 'utf8').digest('base64')}'`;
}

interface Row {
  key: string;
  profile: string;
  endpoint: string;
  check: string;
  cells: Map<string, CheckResult>;
}

/** Rows in the order results first name them (the runner's order: profile, endpoint, check). */
function matrixRows(results: CheckResult[]): Row[] {
  const rows = new Map<string, Row>();
  for (const r of results) {
    const key = `${r.profile}/${r.endpoint}/${r.check}`;
    let row = rows.get(key);
    if (!row) {
      row = { key, profile: r.profile, endpoint: r.endpoint, check: r.check, cells: new Map() };
      rows.set(key, row);
    }
    row.cells.set(r.proxy, r);
  }
  return [...rows.values()];
}

function explainRow(row: Row): string {
  for (const r of row.cells.values()) {
    if (typeof r.evidence?.explain === 'string') return r.evidence.explain;
  }
  const def = CHECKS[row.check];
  if (!def) return '';
  const m = /^(.*):(\d+)$/.exec(row.endpoint);
  try {
    return def.explain({ host: m?.[1] ?? row.endpoint, port: Number(m?.[2] ?? 0), proxyId: '' });
  } catch {
    return '';
  }
}

function outcomeLabel(r: CheckResult): string {
  const d = disposition(r);
  const tag =
    d === 'failure' || d === 'error'
      ? `<span class="tag unexp" title="unexpected">! expected ${esc(r.expected)}</span>`
      : r.outcome !== 'pass'
        ? '<span class="tag exp" title="as the expectations say">expected</span>'
        : '';
  return `<span class="chip">${esc(LOOK[r.outcome]?.glyph ?? '?')}</span> ${esc(r.outcome)}${tag}`;
}

function cell(r: CheckResult | undefined, proxy: string): string {
  if (!r) return `<td class="cell none" data-proxy="${esc(proxy)}">no result</td>`;
  const d = disposition(r);
  const unexpected = d === 'failure' || d === 'error';
  const expectation = r.matched
    ? `As expected${r.expectedReason ? `: ${r.expectedReason}` : ' (no expectation rule: pass, or skip where the check does not apply)'}`
    : `Not as expected: expected ${r.expected}${r.expectedReason ? ` (${r.expectedReason})` : ''}, got ${r.outcome}.`;
  return [
    `<td class="cell o-${esc(r.outcome)}${unexpected ? ' unexpected' : ''}" id="${esc(r.id)}" data-proxy="${esc(proxy)}" data-outcome="${esc(r.outcome)}" data-matched="${r.matched}">`,
    `<details><summary>${outcomeLabel(r)}</summary><div class="body">`,
    `<p class="message">${esc(r.message)}</p>`,
    `<p class="expectation">${esc(expectation)}</p>`,
    r.remediation ? `<p class="remediation"><b>Remedy:</b> ${esc(r.remediation)}</p>` : '',
    `<details class="evidence"><summary>evidence</summary><pre>${esc(evidenceJson(r))}</pre></details>`,
    `<p class="meta"><span>${esc(r.durationMs)} ms</span><span><code>${esc(r.id)}</code></span></p>`,
    '</div></details></td>',
  ].join('');
}

function matrix(report: RunReport, proxies: ProxyInfo[]): string {
  const rows = matrixRows(report.results);
  const out = [
    '<table class="matrix" id="matrix">',
    '<thead><tr><th scope="col">endpoint check</th>',
    ...proxies.map(
      (p) =>
        `<th scope="col" class="proxy" data-proxy="${esc(p.id)}">${esc(p.id)}<small>${esc(p.kind)} · ${esc(p.runtime)}</small></th>`,
    ),
    '</tr></thead><tbody>',
  ];
  let group = '';
  for (const row of rows) {
    const g = `${row.profile} · ${row.endpoint}`;
    if (g !== group) {
      group = g;
      out.push(
        `<tr class="group"><th colspan="${proxies.length + 1}" scope="rowgroup">${esc(row.profile)} · <code>${esc(row.endpoint)}</code></th></tr>`,
      );
    }
    const unexpected = [...row.cells.values()].some((r) => !r.matched);
    out.push(
      `<tr class="check${unexpected ? ' has-unexpected' : ''}" data-row="${esc(row.key)}" data-check="${esc(row.check)}">`,
      `<th scope="row" title="${esc(explainRow(row))}">${esc(checkTitle(row.check))}<code>${esc(row.check)}</code></th>`,
      ...proxies.map((p) => cell(row.cells.get(p.id), p.id)),
      '</tr>',
    );
  }
  out.push('</tbody></table>');
  return out.join('\n');
}

function summary(report: RunReport, proxies: ProxyInfo[]): string {
  const counts = Object.fromEntries(OUTCOMES.map((o) => [o, 0])) as Record<Outcome, number>;
  let matched = 0;
  for (const r of report.results) {
    counts[r.outcome] = (counts[r.outcome] ?? 0) + 1;
    if (r.matched) matched += 1;
  }
  const total = report.results.length;
  const outcomeRows = OUTCOMES.map(
    (o) =>
      `<tr class="o-${o}" data-outcome="${o}"><td><span class="chip">${esc(LOOK[o].glyph)}</span> ${o}</td><td class="num">${counts[o]}</td></tr>`,
  );
  const proxyRows = proxies.map((p) => {
    const rs = report.results.filter((r) => r.proxy === p.id);
    const bad = rs.filter((r) => !r.matched).length;
    const product =
      p.product && p.product.id !== 'unknown'
        ? `${p.product.name}${p.product.version ? ` ${p.product.version}` : ''} (${p.product.confidence})`
        : 'unknown';
    return `<tr data-proxy="${esc(p.id)}"><td><code>${esc(p.id)}</code></td><td>${esc(p.kind)}</td><td>${esc(p.runtime)}</td><td>${esc(p.version)}</td><td title="${esc(p.product?.evidence.join('; ') ?? '')}">${esc(product)}</td><td class="num">${p.startMs !== undefined ? `${esc(p.startMs)} ms` : '–'}</td><td class="num">${rs.length - bad}/${rs.length}</td></tr>`;
  });
  return [
    '<section id="summary"><h2>Summary</h2><div class="side">',
    '<table class="counts" id="counts"><thead><tr><th>outcome</th><th>results</th></tr></thead><tbody>',
    ...outcomeRows,
    `</tbody><tfoot><tr><th>total</th><td class="num" data-count="total">${total}</td></tr>`,
    `<tr><th>as expected</th><td class="num" data-count="matched">${matched}</td></tr>`,
    `<tr><th>not as expected</th><td class="num" data-count="unmatched">${total - matched}</td></tr></tfoot></table>`,
    '<table class="proxies" id="proxies"><thead><tr><th>proxy</th><th>kind</th><th>runtime</th><th>version</th><th>product</th><th>started in</th><th>as expected</th></tr></thead><tbody>',
    ...proxyRows,
    '</tbody></table></div></section>',
  ].join('\n');
}

/** Per proxy: what to change (report.remediation), with the squid.conf lines ready to paste. */
function remediationSection(report: RunReport): string {
  const items = report.remediation ?? [];
  if (!items.length) return '';
  const blocks = items.map((r) =>
    [
      `<div class="fix" data-proxy="${esc(r.proxy)}" data-product="${esc(r.product)}"><h3><code>${esc(r.proxy)}</code> <span class="meta">${esc(productLine(r))}</span></h3>`,
      `<ul>${r.text.map((t) => `<li>${esc(t)}</li>`).join('')}</ul>`,
      ...(r.settings ?? []).map(
        (x) =>
          `<p class="meta">${esc(x.where)}:</p><pre class="${r.product === 'squid' ? 'squid-conf' : 'settings'}">${esc(x.lines.join('\n'))}</pre>`,
      ),
      '</div>',
    ].join(''),
  );
  return ['<section id="remediation"><h2>What to change</h2>', ...blocks, '</section>'].join('\n');
}

const VERDICT_TEXT = { go: 'go', 'no-go': 'no-go', 'at-risk': 'at risk' } as const;

/** First thing in the page: go / no-go / at risk per agent with its reason, then the findings. */
function goLiveSection(report: RunReport): string {
  const verdicts = report.agents?.verdicts ?? [];
  if (!verdicts.length) return '';
  const product = (id: string) => {
    const p = report.proxies.find((x) => x.id === id)?.product;
    return p && p.id !== 'unknown' ? `${p.name}${p.version ? ` ${p.version}` : ''}` : 'product unknown';
  };
  const rows = verdicts.map(
    (v) =>
      `<tr data-agent="${esc(v.agent)}" data-proxy="${esc(v.proxy)}" data-verdict="${esc(v.verdict)}"><td class="v v-${esc(v.verdict)}">${esc(VERDICT_TEXT[v.verdict])}</td><td>${esc(v.title)} <code>${esc(v.agent)}</code></td><td><code>${esc(v.proxy)}</code> <span class="meta">${esc(product(v.proxy))}</span></td><td>${esc(v.reason)}</td></tr>`,
  );
  const findings = (report.findings ?? []).map((f) =>
    [
      `<div class="finding s-${esc(f.severity)}" data-finding="${esc(f.id)}" data-cause="${esc(f.cause)}"><h3>[${esc(f.severity)}] <code>${esc(f.proxy)}</code> ${esc(f.title)}</h3>`,
      `<ul>${f.remedy.map((t) => `<li>${esc(t)}</li>`).join('')}</ul>`,
      ...(f.settings ?? []).map(
        (x) => `<p class="meta">${esc(x.where)}:</p><pre class="settings">${esc(x.lines.join('\n'))}</pre>`,
      ),
      `<p class="meta">evidence: ${f.evidence.map((id) => `<a href="#${esc(id)}">${esc(id)}</a>`).join(', ')}${f.results > f.evidence.length ? ` and ${f.results - f.evidence.length} more` : ''}</p></div>`,
    ].join(''),
  );
  return [
    '<section id="agents"><h2>Agents: go, no-go, at risk</h2>',
    `<p class="meta">${esc(report.agents?.rule ?? '')}</p>`,
    '<table class="agents"><thead><tr><th>verdict</th><th>agent</th><th>proxy</th><th>reason</th></tr></thead><tbody>',
    ...rows,
    '</tbody></table></section>',
    `<section id="findings"><h2>Findings by root cause</h2>${findings.length ? '' : '<p class="meta">none: every check that ran passed</p>'}`,
    ...findings,
    '</section>',
  ].join('\n');
}

function legend(): string {
  return [
    '<section id="legend"><h2>Legend</h2><ul class="legend">',
    ...OUTCOMES.map(
      (o) =>
        `<li class="o-${o}"><span class="chip">${esc(LOOK[o].glyph)}</span> <b>${o}</b>: ${esc(LOOK[o].meaning)}</li>`,
    ),
    '<li><span class="chip o-fail">✗</span><span class="tag exp">expected</span>: the outcome is what scenarios/expectations predicts for this proxy (reason in the cell), so it does not make the run red</li>',
    '<li><span class="chip o-pass unexpected">✓</span><span class="tag unexp">! expected fail</span>: red frame, the outcome differs from the expectation in either direction; the run exits 1</li>',
    '</ul><p class="meta">Click a cell for its message, expectation, remedy and evidence. Hover a check for what it verifies.</p></section>',
  ].join('\n');
}

export function renderHtml(report: RunReport): string {
  const proxies = proxyOrder(report);
  const total = report.results.length;
  const unmatched = report.results.filter((r) => !r.matched).length;
  const wall = Date.parse(report.finishedAt) - Date.parse(report.startedAt);
  const csp = `default-src 'none'; style-src ${sha256(CSS)}; script-src ${sha256(SCRIPT)}; img-src data:; base-uri 'none'; form-action 'none'`;
  const verdict =
    unmatched === 0
      ? `<p class="verdict ok" id="verdict">All ${total} results as expected</p>`
      : `<p class="verdict bad" id="verdict">${unmatched} of ${total} results not as expected</p>`;
  return [
    '<!doctype html>',
    '<html lang="en"><head><meta charset="utf-8">',
    `<meta http-equiv="Content-Security-Policy" content="${csp}">`,
    '<meta name="viewport" content="width=device-width, initial-scale=1">',
    `<title>proxycheck: ${unmatched === 0 ? 'all as expected' : `${unmatched} not as expected`} (${esc(report.startedAt)})</title>`,
    '<link rel="icon" href="data:,">',
    `<style>${CSS}</style>`,
    '</head><body>',
    '<header><h1>proxycheck report</h1>',
    verdict,
    `<p class="meta" id="run-meta"><span>${esc(report.tool.name)} ${esc(report.tool.version)}</span><span>${esc(report.schema)}</span><span>started <time>${esc(report.startedAt)}</time></span><span>finished <time>${esc(report.finishedAt)}</time></span><span>${Number.isFinite(wall) ? `${(wall / 1000).toFixed(1)} s` : ''}</span></p>`,
    '</header>',
    goLiveSection(report),
    summary(report, proxies),
    remediationSection(report),
    legend(),
    '<section id="results"><h2>Matrix</h2>',
    '<p class="controls" id="controls" hidden><label><input type="checkbox" id="only-unexpected"> only rows with unexpected results</label><button type="button" id="expand-all">expand all</button><button type="button" id="collapse-all">collapse all</button></p>',
    matrix(report, proxies),
    '</section>',
    `<script>${SCRIPT}</script>`,
    '</body></html>',
  ].join('\n');
}
