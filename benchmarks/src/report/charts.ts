/**
 * What the report's charts show, as plain data: the page embeds these specs as JSON and its
 * inline script (client.ts) turns each into a Chart.js chart. Computing them here keeps the
 * in-page code small and the choices (log scales, colours, targets) type-checked.
 */

import type { BenchReport, ContenderInfo, MetricInfo, ScaleFanoutPoint, ScenarioName, Summary } from './types.js';

export interface Series {
  readonly name: string;
  readonly color: string;
  /** Raw baselines are drawn lighter (bars) or dashed (lines), next to the contender they pace. */
  readonly raw: boolean;
}

export type ChartSpec =
  | {
      /** Medians of one unit's metrics, one bar per contender in each metric's group. */
      readonly kind: 'bars';
      readonly title: string;
      readonly unit: string;
      readonly labels: readonly string[];
      readonly series: ReadonlyArray<Series & { readonly values: ReadonlyArray<number | null> }>;
      readonly log: boolean;
    }
  | {
      /** Ratio to the raw baseline, bars floating from 1.0, with each contender's target. */
      readonly kind: 'ratio';
      readonly title: string;
      readonly labels: readonly string[];
      readonly series: ReadonlyArray<
        Series & {
          readonly values: ReadonlyArray<number | null>;
          readonly targets: ReadonlyArray<{ readonly op: '<=' | '>='; readonly ratio: number } | null>;
        }
      >;
      /** The axis covers hybridbus's ratios and the targets; others (oslo's ×7) are clipped and labelled. */
      readonly min: number;
      readonly max: number;
    }
  | {
      /** Latency by percentile; x is in "nines" (-log10(1 - p)), so p99 and p99.9 get room. */
      readonly kind: 'percentiles';
      readonly title: string;
      readonly series: ReadonlyArray<Series & { readonly points: ReadonlyArray<readonly [number, number]> }>;
    }
  | {
      /** How a cost grows with the number of servers n. */
      readonly kind: 'growth';
      readonly title: string;
      readonly yLabel: string;
      readonly xs: readonly number[];
      readonly series: ReadonlyArray<Series & { readonly values: readonly number[] }>;
      readonly logY: boolean;
    };

export const SCENARIO_ORDER: readonly ScenarioName[] = ['latency', 'throughput', 'cast', 'fanout', 'notify'];

// Distinct hues that stay apart for colour-blind readers (Okabe–Ito, reordered).
const PALETTE = ['#0072b2', '#e69f00', '#009e73', '#cc79a7', '#d55e00', '#56b4e9', '#8c564b', '#7f7f7f'];

/** Mixes a #rrggbb colour with white, so a raw baseline reads as its contender's lighter twin. */
function lighten(hex: string, amount: number): string {
  const n = Number.parseInt(hex.slice(1), 16);
  const mix = (c: number): number => Math.round(c + (255 - c) * amount);
  const parts = [(n >> 16) & 255, (n >> 8) & 255, n & 255].map(mix);
  return `#${parts.map((c) => c.toString(16).padStart(2, '0')).join('')}`;
}

/**
 * A colour per contender that ran: each non-raw contender its own hue, and each raw baseline
 * the lighter hue of the first contender compared with it.
 */
export function contenderColors(report: BenchReport): Map<string, string> {
  const ran = report.contenders.filter((c) => c.skipped === undefined);
  const colors = new Map<string, string>();
  let next = 0;
  for (const c of ran) {
    if (c.kind !== 'raw') colors.set(c.id, PALETTE[next++ % PALETTE.length] ?? '#333333');
  }
  for (const c of ran) {
    if (c.kind !== 'raw') continue;
    const pacer = ran.find(
      (o) => o.kind !== 'raw' && report.summaries.some((s) => s.contender === o.id && s.baseline === c.id),
    );
    const own = pacer === undefined ? undefined : colors.get(pacer.id);
    colors.set(c.id, own === undefined ? PALETTE[next++ % PALETTE.length] ?? '#999999' : lighten(own, 0.55));
  }
  return colors;
}

export function summaryOf(report: BenchReport, metric: string, contender: string): Summary | undefined {
  return report.summaries.find((s) => s.metric === metric && s.contender === contender);
}

/** Whether values span enough orders of magnitude that a linear axis would hide the small ones. */
function wantsLog(values: ReadonlyArray<number | null>, spread = 30): boolean {
  const pos = values.filter((v): v is number => v !== null && v > 0);
  if (pos.length < 2) return false;
  return Math.max(...pos) / Math.min(...pos) > spread;
}

function series(c: ContenderInfo, colors: Map<string, string>): Series {
  return { name: c.label, color: colors.get(c.id) ?? '#333333', raw: c.kind === 'raw' };
}

/** The charts of one scenario: medians (one chart per unit, as units can't share an axis) and ratios. */
export function scenarioCharts(report: BenchReport, scenario: ScenarioName, colors: Map<string, string>): ChartSpec[] {
  const metrics = report.metrics.filter((m) => m.scenario === scenario);
  const ran = report.contenders.filter((c) => c.skipped === undefined);
  const charts: ChartSpec[] = [];
  const units = [...new Set(metrics.map((m) => m.unit))];
  for (const unit of units) {
    const ms = metrics.filter((m) => m.unit === unit);
    const withData = ran.filter((c) => ms.some((m) => summaryOf(report, m.id, c.id) !== undefined));
    if (withData.length === 0) continue;
    const ser = withData.map((c) => ({
      ...series(c, colors),
      values: ms.map((m) => summaryOf(report, m.id, c.id)?.median ?? null),
    }));
    charts.push({
      kind: 'bars',
      title: `${scenario}: median${units.length > 1 ? ` (${unit})` : ''}, ${betterWord(ms)}`,
      unit,
      labels: ms.map((m) => m.label),
      series: ser,
      log: wantsLog(ser.flatMap((s) => s.values)),
    });
  }
  const compared = ran.filter((c) => metrics.some((m) => summaryOf(report, m.id, c.id)?.ratio !== undefined));
  if (compared.length > 0) {
    const ser = compared.map((c) => ({
      ...series(c, colors),
      values: metrics.map((m) => summaryOf(report, m.id, c.id)?.ratio ?? null),
      targets: metrics.map((m) => m.targets?.[c.id] ?? null),
    }));
    // Zoom on what the targets are about: a linear axis around 1.0 shows a 5 % miss, which a
    // range stretched to fit oslo.messaging's ×7 (or a log axis) would flatten.
    const focusSeries = ser.filter((_, i) => compared[i]?.kind === 'hybridbus');
    const focus = [
      ...(focusSeries.length > 0 ? focusSeries : ser).flatMap((s) => s.values),
      ...ser.flatMap((s) => s.targets.map((t) => t?.ratio ?? null)),
    ].filter((v): v is number => v !== null && Number.isFinite(v));
    const lo = Math.min(0.9, ...focus);
    const hi = Math.max(1.1, ...focus);
    const pad = (hi - lo) * 0.12;
    charts.push({
      kind: 'ratio',
      title: `${scenario}: ratio to raw baseline (dashed 1.0 = raw client, black tick = target)`,
      labels: metrics.map((m) => m.label),
      series: ser,
      // Whole tenths (twentieths when zoomed in) make round tick labels.
      min: Math.max(0, Math.floor((lo - pad) / step(hi - lo)) * step(hi - lo)),
      max: Math.ceil((hi + pad) / step(hi - lo)) * step(hi - lo),
    });
  }
  return charts;
}

function step(range: number): number {
  return range > 0.6 ? 0.1 : 0.05;
}

function betterWord(ms: readonly MetricInfo[]): string {
  const dirs = new Set(ms.map((m) => m.better));
  return dirs.size === 1 ? (dirs.has('lower') ? 'lower is better' : 'higher is better') : 'see table for direction';
}

export function latencyChart(report: BenchReport, colors: Map<string, string>): ChartSpec | undefined {
  const dists = report.latency ?? [];
  const ser = dists.flatMap((d) => {
    const c = report.contenders.find((x) => x.id === d.contender);
    return c === undefined || d.percentiles.length === 0 ? [] : [{ ...series(c, colors), points: d.percentiles }];
  });
  if (ser.length === 0) return undefined;
  return { kind: 'percentiles', title: 'call latency by percentile (µs, log scale)', series: ser };
}

export function scaleCharts(report: BenchReport, colors: Map<string, string>): ChartSpec[] {
  const scale = report.scale;
  if (scale === undefined || scale.points.length === 0) return [];
  const c = report.contenders.find((x) => x.id === scale.contender);
  const base: Series = c === undefined
    ? { name: scale.contender, color: PALETTE[0] ?? '#0072b2', raw: false }
    : series(c, colors);
  const xs = scale.points.map((p) => p.n);
  const one = (title: string, yLabel: string, values: readonly number[]): ChartSpec => ({
    kind: 'growth', title, yLabel, xs, series: [{ ...base, values }], logY: wantsLog(values),
  });
  return [
    one('fanout completion vs servers', 'ms', scale.points.map((p) => p.fanoutCompleteMs)),
    one('client fds per peer vs servers', 'fds / peer', scale.points.map((p) => p.clientFdsPerPeer)),
    one('client RSS per peer vs servers', 'KiB / peer', scale.points.map((p) => p.clientRssPerPeerKiB)),
    {
      kind: 'growth',
      title: 'startup and registration vs servers',
      yLabel: 'ms',
      xs,
      series: [
        { ...base, name: 'startup (spawn → all listening)', values: scale.points.map((p) => p.startupMs) },
        {
          name: 'registration (until a lookup sees all n)',
          color: '#e69f00',
          raw: false,
          values: scale.points.map((p) => p.registerMs),
        },
      ],
      logY: wantsLog(scale.points.flatMap((p) => [p.startupMs, p.registerMs])),
    },
    one('name-service lookups vs servers', 'lookups', scale.points.map((p) => p.nsLookups)),
    ...fanoutCharts(scale.fanouts ?? []),
  ];
}

const FANOUT_CONTENDERS = [
  { id: 'zmq', name: 'zmq unicast (a copy per server)', color: PALETTE[0] as string },
  { id: 'rabbit', name: 'RabbitMQ fanout (one publish)', color: PALETTE[1] as string },
  { id: 'zmq-multicast', name: 'multicast zmq (RADIO/DISH)', color: PALETTE[2] as string },
] as const;

/** The fanout contenders side by side: time to reach all n, and CPU per fanout (sender, broker). */
function fanoutCharts(fanouts: readonly ScaleFanoutPoint[]): ChartSpec[] {
  if (fanouts.length === 0) return [];
  const xs = [...new Set(fanouts.map((f) => f.n))].sort((a, b) => a - b);
  const present = FANOUT_CONTENDERS.filter((c) => fanouts.some((f) => f.contender === c.id));
  const at = (id: string, n: number, pick: (f: ScaleFanoutPoint) => number | undefined): number => {
    const f = fanouts.find((x) => x.contender === id && x.n === n);
    return f ? (pick(f) ?? NaN) : NaN;
  };
  const complete = present.map((c) => ({ name: c.name, color: c.color, raw: false, values: xs.map((n) => at(c.id, n, (f) => f.completeMs)) }));
  const cpu = [
    ...present.map((c) => ({ name: `${c.name}: sender`, color: c.color, raw: false, values: xs.map((n) => at(c.id, n, (f) => f.senderCpuMs)) })),
    ...(fanouts.some((f) => f.brokerCpuMs !== undefined)
      ? [{ name: 'RabbitMQ itself (broker process)', color: PALETTE[4] as string, raw: false, values: xs.map((n) => at('rabbit', n, (f) => f.brokerCpuMs)) }]
      : []),
  ];
  const finite = (ss: ReadonlyArray<{ values: readonly number[] }>): number[] => ss.flatMap((x) => x.values.filter(Number.isFinite));
  return [
    { kind: 'growth', title: 'fanout: until all n servers have it', yLabel: 'ms', xs, series: complete, logY: wantsLog(finite(complete)) },
    { kind: 'growth', title: 'CPU per fanout', yLabel: 'CPU ms', xs, series: cpu, logY: wantsLog(finite(cpu)) },
  ];
}
