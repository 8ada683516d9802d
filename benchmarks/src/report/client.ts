/**
 * The page's own script: reads the chart specs (charts.ts) embedded as JSON and draws each on
 * its canvas with Chart.js, then records how many it drew in `document.body.dataset.rendered`
 * (the rendering test reads it) and each canvas's box (the test looks for colour there).
 * Plain ES2020 in a string, since it runs in the browser and the package compiles without DOM types.
 */
import { formatNumber } from './format.js';

export const CLIENT_JS = String.raw`
(function () {
  'use strict';
  var specs = JSON.parse(document.getElementById('chart-specs').textContent);
  var drawn = 0;
  var failures = [];
  if (typeof Chart === 'undefined') {
    failures.push('Chart.js did not load');
  } else {
    Chart.defaults.animation = false;
    Chart.defaults.responsive = true;
    Chart.defaults.maintainAspectRatio = false;
    Chart.defaults.font.family = 'system-ui, "DejaVu Sans", "Liberation Sans", Arial, sans-serif';
    Chart.defaults.font.size = 12;
    Chart.defaults.color = '#333';
    Chart.defaults.plugins.legend.labels.boxWidth = 14;
  }

  var fmt = ${formatNumber.toString()};
  // Log axes label only 1-2-5 steps, so the grid stays readable.
  function logTick(v) {
    var m = v / Math.pow(10, Math.floor(Math.log10(v) + 1e-9));
    return (Math.abs(m - 1) < 1e-6 || Math.abs(m - 2) < 1e-6 || Math.abs(m - 5) < 1e-6) ? fmt(v) : '';
  }
  // Category labels broken into lines of ~18 characters, so neighbouring groups don't overlap.
  function wrap(label) {
    var lines = [], line = '';
    String(label).split(' ').forEach(function (word) {
      if (line && (line + ' ' + word).length > 18) { lines.push(line); line = word; }
      else line = line ? line + ' ' + word : word;
    });
    if (line) lines.push(line);
    return lines;
  }
  function yAxis(log, title) {
    var axis = { type: log ? 'logarithmic' : 'linear', title: { display: !!title, text: title || '' } };
    if (log) axis.ticks = { callback: logTick, autoSkip: false };
    else axis.beginAtZero = true;
    return axis;
  }

  // "Nines": p50 -> 0.3, p90 -> 1, p99 -> 2, p99.9 -> 3; p100 (the max) sits half a nine past the rest.
  function nines(p, cap) { return p >= 100 ? cap : -Math.log10(1 - p / 100); }

  // Draws the 1.0 line across a ratio chart and each bar's target as a black tick with its op.
  var targetPlugin = {
    id: 'hbTargets',
    afterDatasetsDraw: function (chart) {
      var spec = chart.config.options.plugins.hbTargets;
      if (!spec) return;
      var ctx = chart.ctx, y = chart.scales.y, area = chart.chartArea;
      ctx.save();
      var one = y.getPixelForValue(1);
      ctx.strokeStyle = '#222';
      ctx.lineWidth = 1.5;
      ctx.setLineDash([6, 4]);
      ctx.beginPath(); ctx.moveTo(area.left, one); ctx.lineTo(area.right, one); ctx.stroke();
      ctx.setLineDash([]);
      spec.series.forEach(function (s, i) {
        var meta = chart.getDatasetMeta(i);
        if (meta.hidden) return;
        meta.data.forEach(function (bar, j) {
          var t = s.targets[j];
          if (!t) return;
          var ty = y.getPixelForValue(t.ratio);
          var half = Math.max(bar.width / 2 + 3, 5);
          var v = s.values[j];
          ctx.strokeStyle = '#000';
          ctx.lineWidth = 2.5;
          ctx.beginPath(); ctx.moveTo(bar.x - half, ty); ctx.lineTo(bar.x + half, ty); ctx.stroke();
          if (v === null) return;
          // A pass/fail mark just outside the bar's end, where the eye already is.
          var ok = passes(v, t);
          var vy = Math.min(Math.max(y.getPixelForValue(v), area.top + 8), area.bottom - 8);
          ctx.font = 'bold 13px ' + Chart.defaults.font.family;
          ctx.textAlign = 'center';
          ctx.fillStyle = ok ? '#1a7f37' : '#cf222e';
          ctx.fillText(ok ? '✓' : '✗', bar.x, v >= 1 ? Math.max(vy - 4, area.top + 12) : Math.min(vy + 14, area.bottom - 2));
        });
        // Bars past the axis (oslo.messaging's ×7) are clipped: write their value inside them.
        meta.data.forEach(function (bar, j) {
          var v = s.values[j];
          if (v === null || (v <= y.max && v >= y.min)) return;
          ctx.save();
          ctx.font = 'bold 11px ' + Chart.defaults.font.family;
          ctx.fillStyle = '#fff';
          ctx.translate(bar.x + 4, v > y.max ? area.top + 6 : area.bottom - 6);
          ctx.rotate(-Math.PI / 2);
          ctx.textAlign = v > y.max ? 'right' : 'left';
          ctx.fillText('×' + fmt(v) + ' (off scale)', 0, 0);
          ctx.restore();
        });
      });
      ctx.restore();
    }
  };

  function passes(v, t) { return t.op === '<=' ? v <= t.ratio : v >= t.ratio; }

  function config(spec) {
    if (spec.kind === 'bars') {
      return {
        type: 'bar',
        data: {
          labels: spec.labels.map(wrap),
          datasets: spec.series.map(function (s) {
            return { label: s.name, data: s.values, backgroundColor: s.color, borderColor: s.raw ? s.color : '#00000033',
                     borderWidth: 1, rawBaseline: s.raw };
          })
        },
        options: {
          scales: { y: yAxis(spec.log, spec.unit + (spec.log ? ' (log scale)' : '')), x: { ticks: { maxRotation: 0, autoSkip: false } } },
          plugins: { tooltip: { callbacks: { label: function (c) { return c.dataset.label + ': ' + fmt(c.parsed.y) + ' ' + spec.unit; } } } }
        }
      };
    }
    if (spec.kind === 'ratio') {
      return {
        type: 'bar',
        data: {
          labels: spec.labels.map(wrap),
          datasets: spec.series.map(function (s) {
            return {
              label: s.name,
              // Floating bars from 1.0, so the bar is the distance from the raw client's figure.
              data: s.values.map(function (v) { return v === null ? null : [1, v]; }),
              backgroundColor: s.values.map(function (v, j) {
                var t = s.targets[j];
                return t && v !== null && !passes(v, t) ? s.color + 'cc' : s.color;
              }),
              borderColor: s.values.map(function (v, j) {
                var t = s.targets[j];
                return t && v !== null ? (passes(v, t) ? '#1a7f37' : '#cf222e') : s.color;
              }),
              borderWidth: s.targets.map(function (t) { return t ? 2 : 0; }),
              borderSkipped: false,
              clip: 0
            };
          })
        },
        options: {
          scales: {
            y: { type: 'linear', min: spec.min, max: spec.max, title: { display: true, text: 'ratio to baseline' },
                 ticks: { callback: function (v) { return '×' + Number(v.toFixed(2)); } } },
            x: { ticks: { maxRotation: 0, autoSkip: false } }
          },
          plugins: {
            hbTargets: spec,
            // The legend shows each contender's colour, not its first bar's pass/fail border.
            legend: { labels: { generateLabels: function (chart) {
              return Chart.defaults.plugins.legend.labels.generateLabels(chart).map(function (l) {
                var s = spec.series[l.datasetIndex];
                l.fillStyle = s.color; l.strokeStyle = s.color; l.lineWidth = 0;
                return l;
              });
            } } },
            tooltip: { callbacks: { label: function (c) {
              var v = spec.series[c.datasetIndex].values[c.dataIndex];
              var t = spec.series[c.datasetIndex].targets[c.dataIndex];
              return c.dataset.label + ': ×' + fmt(v) + (t ? ' (target ' + t.op + ' ' + t.ratio + ': ' + (passes(v, t) ? 'pass' : 'FAIL') + ')' : '');
            } } }
          }
        },
        plugins: [targetPlugin]
      };
    }
    if (spec.kind === 'percentiles') {
      var maxFinite = 0;
      spec.series.forEach(function (s) { s.points.forEach(function (p) { if (p[0] < 100) maxFinite = Math.max(maxFinite, nines(p[0], 0)); }); });
      var cap = Math.ceil(maxFinite) + 0.5;
      var ticks = [[0, 'p0'], [nines(50, 0), 'p50'], [1, 'p90'], [nines(95, 0), 'p95']];
      for (var k = 2; k < cap; k++) ticks.push([k, k === 2 ? 'p99' : 'p99.' + '9'.repeat(k - 2)]);
      ticks.push([cap, 'max']);
      var tickLabel = function (v) {
        var best = ticks[0];
        ticks.forEach(function (t) { if (Math.abs(t[0] - v) < Math.abs(best[0] - v)) best = t; });
        return best[1];
      };
      return {
        type: 'line',
        data: {
          datasets: spec.series.map(function (s) {
            return {
              label: s.name,
              data: s.points.map(function (p) { return { x: nines(p[0], cap), y: p[1], p: p[0] }; }),
              borderColor: s.color, backgroundColor: s.color, borderDash: s.raw ? [6, 4] : [],
              borderWidth: 2, pointRadius: 2.5, tension: 0
            };
          })
        },
        options: {
          parsing: false,
          scales: {
            x: {
              type: 'linear', min: 0, max: cap,
              title: { display: true, text: 'percentile' },
              afterBuildTicks: function (axis) { axis.ticks = ticks.map(function (t) { return { value: t[0] }; }); },
              ticks: { autoSkip: false, maxRotation: 0, callback: tickLabel }
            },
            y: yAxis(true, 'µs (log scale)')
          },
          plugins: { tooltip: { callbacks: {
            title: function (items) { var p = items[0].raw.p; return p >= 100 ? 'max' : 'p' + p; },
            label: function (c) { return c.dataset.label + ': ' + fmt(c.parsed.y) + ' µs'; }
          } } }
        }
      };
    }
    // growth
    return {
      type: 'line',
      data: {
        datasets: spec.series.map(function (s) {
          return {
            label: s.name,
            data: spec.xs.map(function (x, i) { return { x: x, y: s.values[i] }; }),
            borderColor: s.color, backgroundColor: s.color, borderWidth: 2, pointRadius: 4, tension: 0
          };
        })
      },
      options: {
        scales: {
          x: {
            type: 'logarithmic', title: { display: true, text: 'servers (n, log scale)' },
            afterBuildTicks: function (axis) { axis.ticks = spec.xs.map(function (v) { return { value: v }; }); },
            ticks: { autoSkip: false, callback: function (v) { return fmt(v); } }
          },
          y: yAxis(spec.logY, spec.yLabel + (spec.logY ? ' (log scale)' : ''))
        },
        plugins: {
          legend: { display: spec.series.length > 1 },
          tooltip: { callbacks: { label: function (c) { return c.dataset.label + ': ' + fmt(c.parsed.y) + ' ' + spec.yLabel; } } }
        }
      }
    };
  }

  specs.forEach(function (spec, i) {
    var canvas = document.getElementById('chart-' + i);
    if (!canvas || typeof Chart === 'undefined') return;
    try {
      new Chart(canvas, config(spec));
      drawn++;
      var r = canvas.getBoundingClientRect();
      canvas.dataset.box = [r.left + window.scrollX, r.top + window.scrollY, r.width, r.height].map(Math.round).join(',');
    } catch (e) {
      failures.push('chart ' + i + ' (' + spec.title + '): ' + (e && e.message ? e.message : String(e)));
    }
  });
  if (failures.length > 0) {
    var box = document.getElementById('render-errors');
    box.hidden = false;
    box.textContent = 'Some charts could not be drawn: ' + failures.join('; ');
  }
  document.body.dataset.rendered = String(drawn);
})();
`;
