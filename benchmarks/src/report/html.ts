/**
 * The HTML report of a bench run: one self-contained file (Chart.js and the page's script
 * inlined, no network), readable from file:// on a machine with networking off.
 */

import { readFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

import {
  contenderColors,
  latencyChart,
  SCENARIO_ORDER,
  scaleCharts,
  scenarioCharts,
  summaryOf,
  type ChartSpec,
} from './charts.js';
import { CLIENT_JS } from './client.js';
import { formatNumber } from './format.js';
import type { BenchReport, ContenderInfo, MetricInfo, ScaleReport, Summary } from './types.js';

/** Escapes text for HTML content and quoted attributes: the report holds URLs and error messages. */
export function escapeHtml(text: string): string {
  return text
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&#39;');
}

/** JSON that is safe inside a <script> element: no '<' can close it or open a comment. */
function scriptJson(value: unknown): string {
  return JSON.stringify(value).replace(/</g, '\\u003c').replace(/\u2028/g, '\\u2028').replace(/\u2029/g, '\\u2029');
}

let chartJsSource: string | undefined;

/**
 * Chart.js's UMD build, read from node_modules. The package's exports map doesn't list it, so
 * it is found next to the CommonJS entry point.
 */
function chartJs(): string {
  if (chartJsSource === undefined) {
    const entry = createRequire(import.meta.url).resolve('chart.js');
    const src = readFileSync(join(dirname(entry), 'chart.umd.min.js'), 'utf8');
    // The source map isn't shipped in the page; the comment would only make devtools fetch it.
    chartJsSource = src.replace(/\n\/\/# sourceMappingURL=\S+\s*$/, '\n');
    if (/<\/script/i.test(chartJsSource)) throw new Error('chart.js build contains "</script": cannot inline it');
  }
  return chartJsSource;
}

export { formatNumber } from './format.js';

type Verdict = 'pass' | 'fail' | 'no data';

function verdict(summary: Summary | undefined, target: { op: '<=' | '>='; ratio: number }): Verdict {
  const r = summary?.ratio;
  if (r === undefined) return 'no data';
  return (target.op === '<=' ? r <= target.ratio : r >= target.ratio) ? 'pass' : 'fail';
}

function durationText(startedAt: string, finishedAt: string): string {
  const ms = Date.parse(finishedAt) - Date.parse(startedAt);
  if (!Number.isFinite(ms) || ms < 0) return '';
  const s = Math.round(ms / 1000);
  return s >= 60 ? ` (${Math.floor(s / 60)} min ${s % 60} s)` : ` (${s} s)`;
}

function settingText(value: unknown): string {
  if (typeof value === 'string') return value;
  if (Array.isArray(value)) return value.map((v) => (typeof v === 'string' ? v : JSON.stringify(v))).join(', ');
  return JSON.stringify(value) ?? String(value);
}

function swatch(color: string | undefined): string {
  return color === undefined ? '' : `<span class="sw" style="background:${escapeHtml(color)}"></span>`;
}

/** Every contender's pass count against its targets: the first thing an operator looks for. */
function targetScoreboard(report: BenchReport, colors: Map<string, string>): string {
  const rows: string[] = [];
  for (const c of report.contenders) {
    if (c.skipped !== undefined) continue;
    const checked = report.metrics.flatMap((m) => {
      const t = m.targets?.[c.id];
      return t === undefined ? [] : [{ m, v: verdict(summaryOf(report, m.id, c.id), t) }];
    });
    if (checked.length === 0) continue;
    const passed = checked.filter((x) => x.v === 'pass').length;
    const failed = checked.filter((x) => x.v === 'fail');
    const cls = failed.length === 0 ? 'pass' : 'fail';
    rows.push(
      `<tr><td>${swatch(colors.get(c.id))}${escapeHtml(c.label)}</td>` +
        `<td><span class="badge ${cls}">${passed} / ${checked.length} met</span></td>` +
        `<td class="small">${failed.length === 0 ? 'all targets met' : `missed: ${failed.map((x) => escapeHtml(x.m.label)).join(', ')}`}</td></tr>`,
    );
  }
  if (rows.length === 0) return '';
  return `<h3>Targets</h3><table class="compact"><thead><tr><th>contender</th><th>targets</th><th></th></tr></thead><tbody>${rows.join('')}</tbody></table>`;
}

function headerHtml(report: BenchReport): string {
  const m = report.machine;
  const settings = Object.entries(report.settings)
    .map(([k, v]) => `<tr><th>${escapeHtml(k)}</th><td>${escapeHtml(settingText(v))}</td></tr>`)
    .join('');
  return `<header>
<h1>${escapeHtml(report.title)}</h1>
<div class="meta">
<table class="kv"><tbody>
<tr><th>command</th><td><code>${escapeHtml(report.command)}</code></td></tr>
<tr><th>machine</th><td>${escapeHtml(`${m.cpuModel}, ${m.cores} cores, ${m.memGiB} GiB, ${m.os}, Node.js ${m.node}`)}</td></tr>
<tr><th>date</th><td>${escapeHtml(`${report.startedAt} → ${report.finishedAt}${durationText(report.startedAt, report.finishedAt)}`)}</td></tr>
</tbody></table>
<details><summary>settings (${Object.keys(report.settings).length})</summary><table class="kv"><tbody>${settings}</tbody></table></details>
</div>
</header>`;
}

function contendersHtml(report: BenchReport, colors: Map<string, string>): string {
  if (report.contenders.length === 0) return ''; // a scale-only run
  const baselines = (c: ContenderInfo): string => {
    const ids = [...new Set(report.summaries.filter((s) => s.contender === c.id && s.baseline !== undefined).map((s) => s.baseline ?? ''))];
    return ids.map((id) => escapeHtml(report.contenders.find((x) => x.id === id)?.label ?? id)).join(', ');
  };
  const rows = report.contenders
    .map((c) => {
      const status = c.skipped === undefined
        ? '<span class="badge pass">ran</span>'
        : `<span class="badge skip">skipped</span> <span class="reason">${escapeHtml(c.skipped)}</span>`;
      const cannot = Object.entries(c.unsupported ?? {})
        .map(([sc, why]) => `<br><span class="badge skip">no ${escapeHtml(sc)}</span> <span class="reason">${escapeHtml(why)}</span>`)
        .join('');
      return `<tr${c.skipped === undefined ? '' : ' class="skipped"'}><td>${swatch(colors.get(c.id))}${escapeHtml(c.label)}</td>` +
        `<td class="nowrap"><code>${escapeHtml(c.id)}</code></td><td>${escapeHtml(c.kind)}</td>` +
        `<td class="url">${c.url === undefined ? '' : `<code>${escapeHtml(c.url)}</code>`}</td>` +
        `<td>${baselines(c)}</td><td>${status}${cannot}</td></tr>`;
    })
    .join('');
  return `<section><h2>Contenders</h2>
<table><thead><tr><th>contender</th><th>id</th><th>kind</th><th>transport URL</th><th>compared with</th><th>status</th></tr></thead>
<tbody>${rows}</tbody></table>
${targetScoreboard(report, colors)}
</section>`;
}

function resultsTable(report: BenchReport, metrics: readonly MetricInfo[], colors: Map<string, string>): string {
  const ran = report.contenders.filter((c) => c.skipped === undefined);
  const hasCpu = metrics.some((m) => ran.some((c) => summaryOf(report, m.id, c.id)?.cpuUsPerMsg !== undefined));
  const hasBroker = metrics.some((m) => ran.some((c) => summaryOf(report, m.id, c.id)?.cpuUsPerMsg?.broker !== undefined));
  const brokerCell = (v: number | undefined): string => (hasBroker ? `<td class="num">${v === undefined ? '' : formatNumber(v)}</td>` : '');
  const body = metrics
    .map((m) => {
      const rows = ran.flatMap((c) => {
        const s = summaryOf(report, m.id, c.id);
        return s === undefined ? [] : [{ c, s }];
      });
      return rows
        .map(({ c, s }, i) => {
          const t = m.targets?.[c.id];
          const v = t === undefined ? undefined : verdict(s, t);
          const rounds = s.rounds.length === 0 ? '' : `${formatNumber(Math.min(...s.rounds))}–${formatNumber(Math.max(...s.rounds))}`;
          const base = s.baseline === undefined ? '' : escapeHtml(report.contenders.find((x) => x.id === s.baseline)?.label ?? s.baseline);
          const cpu = s.cpuUsPerMsg === undefined
            ? `<td></td><td></td>${brokerCell(undefined)}`
            : `<td class="num">${s.cpuUsPerMsg.client === undefined ? '' : formatNumber(s.cpuUsPerMsg.client)}</td>` +
              `<td class="num">${s.cpuUsPerMsg.server === undefined ? '' : formatNumber(s.cpuUsPerMsg.server)}</td>` +
              brokerCell(s.cpuUsPerMsg.broker);
          const first = i === 0
            ? `<th rowspan="${rows.length}" class="metric">${escapeHtml(m.label)}<div class="small">${escapeHtml(m.unit)}, ${m.better} is better</div></th>`
            : '';
          return `<tr class="${i === 0 ? 'group' : ''}${c.kind === 'raw' ? ' raw' : ''}">${first}` +
            `<td>${swatch(colors.get(c.id))}${escapeHtml(c.label)}</td>` +
            `<td class="num strong">${formatNumber(s.median)}</td>` +
            `<td class="num small">${rounds}</td>` +
            `<td class="small">${base}</td>` +
            `<td class="num">${s.ratio === undefined ? '' : `×${s.ratio.toFixed(3)}`}</td>` +
            `<td class="num">${t === undefined ? '' : `${t.op === '<=' ? '≤' : '≥'} ${t.ratio}`}</td>` +
            `<td>${v === undefined ? '' : `<span class="badge ${v === 'no data' ? 'skip' : v}">${v}</span>`}</td>` +
            (hasCpu ? cpu : '') +
            '</tr>';
        })
        .join('');
    })
    .join('');
  const cpuHead = hasCpu ? `<th>CPU client<br>µs/msg</th><th>CPU server<br>µs/msg</th>${hasBroker ? '<th>CPU broker<br>µs/msg</th>' : ''}` : '';
  return `<table class="results"><thead><tr><th>metric</th><th>contender</th><th>median</th><th>rounds<br>min–max</th>` +
    `<th>baseline</th><th>ratio</th><th>target</th><th>verdict</th>${cpuHead}</tr></thead><tbody>${body}</tbody></table>`;
}

/** Places the charts' canvases; their specs are numbered in page order, matching `chart-<i>`. */
class Charts {
  readonly specs: ChartSpec[] = [];
  html(spec: ChartSpec, wide = false): string {
    const i = this.specs.push(spec) - 1;
    return `<figure class="chart${wide ? ' wide' : ''}"><figcaption>${escapeHtml(spec.title)}</figcaption>` +
      `<div class="canvas-box"><canvas id="chart-${i}" role="img" aria-label="${escapeHtml(spec.title)}"></canvas></div></figure>`;
  }
}

function scaleHtml(scale: ScaleReport, report: BenchReport, charts: Charts, colors: Map<string, string>): string {
  const label = report.contenders.find((c) => c.id === scale.contender)?.label ?? scale.contender;
  const specs = scaleCharts(report, colors);
  const rows = scale.points
    .map((p) =>
      '<tr>' +
      [p.n, p.procs, p.startupMs, p.registerMs, p.fanoutCompleteMs, p.clientFds, p.clientFdsPerPeer, p.clientRssKiB, p.clientRssPerPeerKiB, p.nsRecords, p.nsLookups]
        .map((v) => `<td class="num">${formatNumber(v)}</td>`)
        .join('') +
      '</tr>',
    )
    .join('');
  const notes = scale.notes.map((n) => `<li>${escapeHtml(n)}</li>`).join('');
  const fanouts = scale.fanouts ?? [];
  const ns = [...new Set(fanouts.map((f) => f.n))].sort((a, b) => a - b);
  const cell = (id: string, n: number, pick: (f: NonNullable<ScaleReport['fanouts']>[number]) => number | undefined): string => {
    const f = fanouts.find((x) => x.contender === id && x.n === n);
    const v = f ? pick(f) : undefined;
    return `<td class="num">${v === undefined || !Number.isFinite(v) ? '—' : formatNumber(v)}</td>`;
  };
  const fanoutTable = fanouts.length === 0 ? '' : `<h3>Fanout side by side</h3>
<table class="results"><thead><tr><th>servers n</th><th>zmq unicast: all have it, ms</th><th>zmq: sender CPU ms / fanout</th><th>RabbitMQ: all have it, ms</th><th>RabbitMQ: sender CPU ms</th><th>RabbitMQ: broker CPU ms</th><th>multicast zmq: all have it, ms</th><th>multicast zmq: sender CPU ms</th></tr></thead><tbody>${ns
    .map((n) => `<tr><td class="num">${formatNumber(n)}</td>${cell('zmq', n, (f) => f.completeMs)}${cell('zmq', n, (f) => f.senderCpuMs)}${cell('rabbit', n, (f) => f.completeMs)}${cell('rabbit', n, (f) => f.senderCpuMs)}${cell('rabbit', n, (f) => f.brokerCpuMs)}${cell('zmq-multicast', n, (f) => f.completeMs)}${cell('zmq-multicast', n, (f) => f.senderCpuMs)}</tr>`)
    .join('')}</tbody></table>`;
  return `<section id="scale"><h2>Scale: ${escapeHtml(label)}</h2>
<div class="grid">${specs.map((s, i) => charts.html(s, specs.length % 2 === 1 && i === specs.length - 1)).join('')}</div>
<table class="results"><thead><tr><th>servers n</th><th>procs</th><th>startup ms</th><th>registration ms</th><th>fanout complete ms</th>
<th>client fds</th><th>fds / peer</th><th>client RSS KiB</th><th>RSS KiB / peer</th><th>NS records</th><th>NS lookups</th></tr></thead><tbody>${rows}</tbody></table>
${fanoutTable}
${notes === '' ? '' : `<h3>Notes</h3><ul class="notes">${notes}</ul>`}
</section>`;
}

const CSS = `
:root { color-scheme: light; }
* { box-sizing: border-box; }
body { margin: 0; background: #f4f5f7; color: #1f2328; font: 14px/1.45 system-ui, "DejaVu Sans", "Liberation Sans", Arial, sans-serif; }
main { max-width: 1240px; margin: 0 auto; padding: 20px 20px 40px; }
header h1 { margin: 0 0 10px; font-size: 24px; }
h2 { font-size: 19px; margin: 0 0 12px; padding-bottom: 6px; border-bottom: 2px solid #d0d7de; }
h3 { font-size: 15px; margin: 16px 0 6px; }
section, header { background: #fff; border: 1px solid #d0d7de; border-radius: 8px; padding: 16px 18px; margin-bottom: 18px; }
code { font: 12.5px/1.4 "DejaVu Sans Mono", "Liberation Mono", monospace; background: #f6f8fa; padding: 1px 4px; border-radius: 4px; word-break: break-all; }
table { border-collapse: collapse; width: 100%; margin: 6px 0; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid #eaeef2; vertical-align: top; }
thead th { background: #f6f8fa; font-size: 12px; color: #57606a; font-weight: 600; border-bottom: 1px solid #d0d7de; }
table.kv th { width: 120px; color: #57606a; font-weight: 600; }
table.compact { width: auto; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.strong { font-weight: 600; }
.nowrap code, .nowrap { white-space: nowrap; word-break: normal; }
.small { font-size: 12px; color: #57606a; }
th.metric { background: #fafbfc; font-weight: 600; width: 200px; border-right: 1px solid #eaeef2; }
tr.group > * { border-top: 2px solid #d0d7de; }
tr.raw td { color: #57606a; }
tr.skipped td { color: #8c959f; }
.reason { font-family: "DejaVu Sans Mono", monospace; font-size: 12px; color: #9a6700; }
.badge { display: inline-block; padding: 0 7px; border-radius: 10px; font-size: 12px; font-weight: 600; white-space: nowrap; }
.badge.pass { background: #dafbe1; color: #1a7f37; }
.badge.fail { background: #ffebe9; color: #cf222e; }
.badge.skip { background: #fff8c5; color: #9a6700; }
.sw { display: inline-block; width: 11px; height: 11px; border-radius: 2px; margin-right: 6px; vertical-align: -1px; }
.grid { display: grid; grid-template-columns: 1fr 1fr; gap: 14px; margin-bottom: 12px; }
figure.chart { margin: 0; border: 1px solid #eaeef2; border-radius: 6px; padding: 8px 10px 10px; }
figure.chart.wide { grid-column: 1 / -1; }
figcaption { font-weight: 600; font-size: 13px; margin-bottom: 4px; }
.canvas-box { position: relative; height: 300px; }
details summary { cursor: pointer; color: #57606a; margin-top: 6px; }
ul.notes li { margin: 3px 0; }
#render-errors { background: #ffebe9; color: #cf222e; padding: 8px 12px; border-radius: 6px; margin-bottom: 12px; }
@media (max-width: 900px) { .grid { grid-template-columns: 1fr; } }
`;

/** Renders the report as one self-contained HTML page. */
export function renderHtml(report: BenchReport): string {
  const colors = contenderColors(report);
  const charts = new Charts();
  const sections: string[] = [];
  const scenarios = [
    ...SCENARIO_ORDER,
    ...[...new Set(report.metrics.map((m) => m.scenario))].filter((s) => !SCENARIO_ORDER.includes(s) && s !== 'scale'),
  ];
  for (const scenario of scenarios) {
    const metrics = report.metrics.filter((m) => m.scenario === scenario);
    if (metrics.length === 0) continue;
    const specs = scenarioCharts(report, scenario, colors);
    const lat = scenario === 'latency' ? latencyChart(report, colors) : undefined;
    const all = lat === undefined ? specs : [...specs, lat];
    // An odd chart out spans the row, so the grid has no hole.
    const figs = all.map((s, i) => charts.html(s, all.length % 2 === 1 && i === all.length - 1));
    sections.push(`<section id="${escapeHtml(scenario)}"><h2>${escapeHtml(scenario)}</h2>
<div class="grid">${figs.join('')}</div>
${resultsTable(report, metrics, colors)}
</section>`);
  }
  if (!report.metrics.some((m) => m.scenario === 'latency')) {
    const lat = latencyChart(report, colors);
    if (lat !== undefined) sections.push(`<section id="latency"><h2>latency</h2><div class="grid">${charts.html(lat, true)}</div></section>`);
  }
  if (report.scale !== undefined) sections.push(scaleHtml(report.scale, report, charts, colors));

  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(report.title)}</title>
<style>${CSS}</style>
</head>
<body>
<main data-charts="${charts.specs.length}">
<div id="render-errors" hidden></div>
${headerHtml(report)}
${contendersHtml(report, colors)}
${sections.join('\n')}
</main>
<script type="application/json" id="chart-specs">${scriptJson(charts.specs)}</script>
<script>${chartJs()}</script>
<script>${CLIENT_JS}</script>
</body>
</html>
`;
}

/** Writes the report as JSON and/or HTML, creating the directories. */
export async function writeReportFiles(report: BenchReport, paths: { json?: string; html?: string }): Promise<void> {
  if (paths.json !== undefined) {
    await mkdir(dirname(paths.json), { recursive: true });
    await writeFile(paths.json, `${JSON.stringify(report, null, 2)}\n`);
  }
  if (paths.html !== undefined) {
    await mkdir(dirname(paths.html), { recursive: true });
    await writeFile(paths.html, renderHtml(report));
  }
}
