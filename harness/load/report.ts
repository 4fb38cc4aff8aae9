/**
 * The load report: the JSON (`proxycheck/load@1`, scenarios/schema/load.schema.json), the terminal
 * summary, and one self-contained HTML page with a latency-over-time chart and a percentile chart
 * drawn by uPlot (a small MIT charting library, inlined from node_modules/uplot). The page runs
 * under a Content-Security-Policy that admits only its own hashed script and style; the data sits in
 * a JSON block (not executed) read by the chart script.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { PHASES } from './histograms.ts';
import type { LoadReport, StepResult } from './run.ts';

const require = createRequire(import.meta.url);
const UPLOT_JS = readFileSync(require.resolve('uplot/dist/uPlot.iife.min.js'), 'utf8');
const UPLOT_CSS = readFileSync(require.resolve('uplot/dist/uPlot.min.css'), 'utf8');

const CSS = `${UPLOT_CSS}
body{font:14px/1.4 system-ui,sans-serif;margin:1.5rem;color:#1b1b1b;max-width:1100px}
h1{font-size:1.4rem;margin:0 0 .3rem}h2{font-size:1.1rem;margin:1.4rem 0 .4rem}
.verdict{font-size:1.1rem;font-weight:600;padding:.5rem .8rem;border-radius:4px}
.ok{background:#e5f4e7;color:#14532d}.bad{background:#fdecea;color:#7f1d1d}
table{border-collapse:collapse;margin:.4rem 0}td,th{border:1px solid #ccc;padding:.2rem .5rem;text-align:right}
th:first-child,td:first-child,td.l{text-align:left}.meta{color:#555}.chart{margin:.5rem 0}`;

const SCRIPT = `(function(){
var r=JSON.parse(document.getElementById('load-data').textContent);
var colors={tcp:'#6b7280',connect:'#2563eb',tls:'#16a34a',firstByte:'#d97706',upload:'#9333ea',keepalive:'#dc2626'};
var phases=${JSON.stringify(PHASES)};
var w=Math.min(1050,document.body.clientWidth-20);
r.steps.forEach(function(s,i){
  var el=document.getElementById('over-time-'+i);if(!el||!s.windows.length)return;
  var xs=s.windows.map(function(w){return w.t});
  var series=[{label:'s'}],data=[xs];
  phases.forEach(function(p){
    if(!s.windows.some(function(w){return w.phases[p]}))return;
    series.push({label:'p99 '+p+' (ms)',stroke:colors[p],scale:'ms',spanGaps:true});
    data.push(s.windows.map(function(w){return w.phases[p]?w.phases[p].p99:null}));
  });
  series.push({label:'sessions open',stroke:'#111',dash:[4,4],scale:'n'});
  data.push(s.windows.map(function(w){return w.agents}));
  new uPlot({title:s.agents+' agents: p99 latency per second',width:w,height:280,
    scales:{x:{time:false}},axes:[{label:'seconds'},{scale:'ms',label:'ms'},{scale:'n',side:1,label:'sessions',grid:{show:false}}],
    series:series},data,el);
});
var el=document.getElementById('percentiles');var last=r.steps[r.steps.length-1];
if(el&&last){var ps=[50,90,99,100],series=[{label:'percentile'}],data=[ps];
  phases.forEach(function(p){var q=last.phases[p];if(!q)return;
    series.push({label:p+' (ms)',stroke:colors[p]});data.push([q.p50,q.p90,q.p99,q.max]);});
  new uPlot({title:last.agents+' agents: latency by percentile',width:w,height:280,scales:{x:{time:false}},
    axes:[{label:'percentile (100 = max)'},{label:'ms'}],series:series},data,el);}
})();`;

function esc(s: string | number | undefined): string {
  return String(s ?? '').replace(
    /[&<>"']/g,
    (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c] ?? c,
  );
}

const hash = (s: string) => `'sha256-${createHash('sha256').update(s, 'utf8').digest('base64')}'`;

function phaseTable(step: StepResult, meaning: LoadReport['phaseMeaning']): string {
  const rows = PHASES.filter((p) => step.phases[p]).map((p) => {
    const q = step.phases[p];
    return `<tr><td title="${esc(meaning[p])}">${p}</td><td>${q?.count}</td><td>${q?.p50}</td><td>${q?.p90}</td><td>${q?.p99}</td><td>${q?.max}</td></tr>`;
  });
  return `<table><tr><th>phase (ms)</th><th>count</th><th>p50</th><th>p90</th><th>p99</th><th>max</th></tr>${rows.join('')}</table>`;
}

function stepSection(step: StepResult, i: number, meaning: LoadReport['phaseMeaning']): string {
  const errors = step.errors.length
    ? `<table><tr><th>error class</th><th>count</th><th>first at</th><th>example</th></tr>${step.errors
        .map(
          (e) =>
            `<tr><td>${esc(e.class)}</td><td>${e.count}</td><td>${(e.firstAtMs / 1000).toFixed(1)} s</td><td class="l">${esc(e.example)}</td></tr>`,
        )
        .join('')}</table>`
    : '<p>No errors.</p>';
  return [
    `<section class="step"><h2>${step.agents} agents for ${step.durationSeconds} s: ${step.sustained ? 'held' : 'broke'}</h2>`,
    step.broke.length ? `<p class="bad">${esc(step.broke.join('; '))}</p>` : '',
    `<p class="meta">${step.sessions} sessions opened, ${step.requests} requests, ${step.keepalives} keep-alives, ${step.reconnects} reconnects, ${step.drops} held tunnels dropped</p>`,
    phaseTable(step, meaning),
    errors,
    `<div class="chart" id="over-time-${i}"></div></section>`,
  ].join('\n');
}

export function renderLoadHtml(r: LoadReport): string {
  const data = JSON.stringify(r).replace(/</g, '\\u003c');
  const csp = `default-src 'none'; style-src ${hash(CSS)}; script-src ${hash(UPLOT_JS)} ${hash(SCRIPT)}; img-src data:; base-uri 'none'; form-action 'none'`;
  return [
    '<!doctype html>',
    '<html lang="en"><head><meta charset="utf-8">',
    `<meta http-equiv="Content-Security-Policy" content="${csp}">`,
    `<title>proxycheck load: ${esc(r.proxy.id)}</title>`,
    '<link rel="icon" href="data:,">',
    `<style>${CSS}</style>`,
    '</head><body>',
    `<h1>proxycheck load: ${esc(r.proxy.id)} (${esc(r.proxy.version)}, ${esc(r.proxy.runtime)})</h1>`,
    `<p class="verdict ${r.capacity.sustained ? 'ok' : 'bad'}" id="capacity">${esc(r.capacity.verdict)}</p>`,
    `<p class="meta">${esc(r.schema)} · started ${esc(r.startedAt)} · time scale ${r.timeScale} · ramp ${r.rampSeconds} s · mix ${esc(r.mix.map((m) => `${m.profile} ${m.agents}`).join(', '))}</p>`,
    '<div class="chart" id="percentiles"></div>',
    ...r.steps.map((s, i) => stepSection(s, i, r.phaseMeaning)),
    `<script type="application/json" id="load-data">${data}</script>`,
    `<script>${UPLOT_JS}</script>`,
    `<script>${SCRIPT}</script>`,
    '</body></html>',
  ].join('\n');
}

/** The terminal summary: the capacity verdict first, then percentiles per phase of the last step. */
export function renderLoadText(r: LoadReport): string {
  const out = [r.capacity.verdict];
  for (const s of r.steps) {
    out.push(
      `${s.agents} agents, ${s.durationSeconds} s: ${s.sessions} sessions, ${s.requests} requests, ${s.keepalives} keep-alives, ${s.drops} drops, ${s.errors.reduce((n, e) => n + e.count, 0)} errors${s.sustained ? '' : ` (broke: ${s.broke.join('; ')})`}`,
    );
    for (const p of PHASES) {
      const q = s.phases[p];
      if (q)
        out.push(
          `  ${p.padEnd(10)} p50 ${q.p50} ms  p90 ${q.p90} ms  p99 ${q.p99} ms  max ${q.max} ms  (${q.count})`,
        );
    }
    for (const e of s.errors) out.push(`  error ${e.class}: ${e.count} (${e.example})`);
  }
  return `${out.join('\n')}\n`;
}
