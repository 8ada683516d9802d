/**
 * The bench HTML report: rendered from a fixture run, checked as text (self-contained, escaped,
 * complete), then opened in headless Chromium, which must draw every chart offline.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { accessSync, constants, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { after, describe, test } from 'node:test';
import { PNG } from 'pngjs';
import { renderHtml, writeReportFiles, type BenchReport } from '@hybridbus/benchmarks';

const root = fileURLToPath(new URL('../../', import.meta.url));
const fixture = JSON.parse(readFileSync(join(root, 'test/fixtures/bench-report.json'), 'utf8')) as BenchReport;
const artifacts = join(root, 'test/dist/artifacts');
// The fixture has 5 scenarios: 6 median charts (fanout has two units), 5 ratio charts,
// the latency percentile curves and 5 scale charts.
const EXPECTED_CHARTS = 17;
const WIDTH = 1280;
const HEIGHT = 3000;

function escapeHtml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&#39;');
}

function findChromium(): string | undefined {
  const names = process.env['CHROMIUM'] ? [process.env['CHROMIUM']] : ['chromium', 'chromium-browser', 'google-chrome'];
  for (const name of names) {
    const candidates = name.includes('/') ? [name] : (process.env['PATH'] ?? '').split(delimiter).map((d) => join(d, name));
    for (const c of candidates) {
      try {
        accessSync(c, constants.X_OK);
        return c;
      } catch {
        // not here
      }
    }
  }
  return undefined;
}

function run(bin: string, args: string[]): Promise<{ stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    execFile(bin, args, { timeout: 30_000, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) =>
      err ? reject(new Error(`${bin} ${args.join(' ')} failed: ${err.message}\n${stderr}`)) : resolve({ stdout, stderr }),
    );
  });
}

describe('bench HTML report', () => {
  const profiles: string[] = [];
  after(() => profiles.forEach((d) => rmSync(d, { recursive: true, force: true })));

  test('is self-contained and names every contender and metric', async () => {
    const html = renderHtml(fixture);
    const external = html.match(/\b(?:src|href)\s*=\s*["']?\s*(?:https?:)?\/\/[^"'\s>]*/gi);
    assert.equal(external, null, `external resources: ${String(external)}`);
    assert.doesNotMatch(html, /@import|url\(\s*["']?(?:https?:)?\/\//i, 'CSS loads nothing');
    assert.doesNotMatch(html, /<link\b/i);
    assert.equal(html.match(/<canvas\b/g)?.length, EXPECTED_CHARTS);
    for (const c of fixture.contenders) assert.ok(html.includes(escapeHtml(c.label)), `contender ${c.label}`);
    const skipped = fixture.contenders.filter((c) => c.skipped !== undefined);
    assert.ok(skipped.length > 0);
    for (const c of skipped) assert.ok(html.includes(escapeHtml(c.skipped ?? '')), `skip reason of ${c.id}`);
    for (const m of fixture.metrics) assert.ok(html.includes(escapeHtml(m.label)), `metric ${m.label}`);
  });

  test('escapes text from the report', async () => {
    const hostile = '<script>alert("label")</script>';
    const reason = '<img src=x onerror=alert(1)> & "quotes"';
    const report: BenchReport = {
      ...fixture,
      contenders: fixture.contenders.map((c, i) =>
        i === 0 ? { ...c, label: hostile } : c.skipped !== undefined ? { ...c, skipped: reason } : c,
      ),
    };
    const html = renderHtml(report);
    assert.ok(!html.includes(hostile), 'the label is not raw HTML');
    assert.ok(!html.includes('<img src=x'), 'the skip reason is not raw HTML');
    assert.ok(html.includes(escapeHtml(hostile)));
    assert.ok(html.includes(escapeHtml(reason)));
    // Only the page's own three scripts: the chart data, Chart.js and the drawing code.
    assert.equal(html.match(/<script\b/gi)?.length, 3);
    assert.equal(html.match(/<\/script/gi)?.length, 3);
  });

  test('headless Chromium draws every chart, offline', { timeout: 90_000 }, async (t) => {
    const chromium = findChromium();
    assert.ok(chromium, 'Chromium is not installed: run `bash scripts/install-deps.sh` (it installs the Debian package chromium), or set CHROMIUM');

    mkdirSync(artifacts, { recursive: true });
    const htmlPath = join(artifacts, 'bench-report.html');
    const pngPath = join(artifacts, 'bench-report.png');
    rmSync(pngPath, { force: true });
    await writeReportFiles(fixture, { html: htmlPath, json: join(artifacts, 'bench-report.json') });
    t.diagnostic(`artefacts: ${htmlPath} ${pngPath}`);

    const common = (): string[] => {
      // A private profile, so parallel runs don't fight over ~/.config/chromium's lock.
      const profile = mkdtempSync(join(tmpdir(), 'hb-chromium-'));
      profiles.push(profile);
      return [
        '--headless', '--no-sandbox', '--disable-gpu', '--hide-scrollbars', '--no-first-run',
        '--disable-extensions', '--mute-audio', `--user-data-dir=${profile}`,
        // No name resolves: the page must not need the network.
        '--host-resolver-rules=MAP * ~NOTFOUND',
        `--window-size=${WIDTH},${HEIGHT}`, '--virtual-time-budget=10000',
      ];
    };
    const url = pathToFileURL(htmlPath).href;

    const { stdout: dom } = await run(chromium, [...common(), '--dump-dom', url]);
    const rendered = /<body[^>]*\bdata-rendered="(\d+)"/.exec(dom)?.[1];
    assert.equal(rendered, String(EXPECTED_CHARTS), 'every chart drawn (body data-rendered)');
    assert.match(dom, /<div id="render-errors" hidden/, 'no chart errors shown');

    await run(chromium, [...common(), `--screenshot=${pngPath}`, url]);
    assert.ok(statSync(pngPath).size > 0, 'screenshot written');
    writeFileSync(join(artifacts, 'bench-report.dom.html'), dom);
    const png = PNG.sync.read(readFileSync(pngPath));
    assert.equal(png.width, WIDTH);
    assert.equal(png.height, HEIGHT);

    const colours = new Set<number>();
    let nonWhite = 0;
    for (let i = 0; i < png.data.length; i += 4) {
      const r = png.data[i] ?? 0;
      const g = png.data[i + 1] ?? 0;
      const b = png.data[i + 2] ?? 0;
      colours.add((r << 16) | (g << 8) | b);
      if (r < 235 || g < 235 || b < 235) nonWhite++;
    }
    assert.ok(colours.size > 500, `only ${colours.size} distinct colours: blank page?`);
    assert.ok(nonWhite / (WIDTH * HEIGHT) > 0.05, `only ${nonWhite} non-white pixels`);

    // Each chart in the screenshot must hold coloured (saturated) pixels: bars and lines, not just axes.
    const boxes = [...dom.matchAll(/<canvas\b[^>]*>/g)].map((m) => {
      const id = /\bid="chart-(\d+)"/.exec(m[0])?.[1];
      const box = /\bdata-box="([\d.,-]+)"/.exec(m[0])?.[1]?.split(',').map(Number);
      return { id, box };
    });
    assert.equal(boxes.length, EXPECTED_CHARTS);
    let checked = 0;
    for (const { id, box } of boxes) {
      assert.ok(box !== undefined && box.length === 4, `chart-${id} has a box`);
      const [x, y, w, fullH] = box as [number, number, number, number];
      // Charts cut by the screenshot's bottom edge count if enough of them shows.
      const h = Math.min(fullH, HEIGHT - y);
      if (h < 150) continue;
      let coloured = 0;
      for (let yy = y; yy < y + h; yy++) {
        for (let xx = x; xx < x + w; xx++) {
          const i = (yy * WIDTH + xx) * 4;
          const r = png.data[i] ?? 0;
          const g = png.data[i + 1] ?? 0;
          const b = png.data[i + 2] ?? 0;
          if (Math.max(r, g, b) - Math.min(r, g, b) > 60) coloured++;
        }
      }
      assert.ok(coloured / (w * h) > 0.01, `chart-${id} at ${box.join(',')} looks empty (${coloured} coloured pixels)`);
      checked++;
    }
    assert.ok(checked >= 3, `only ${checked} charts fall in the screenshot`);
    t.diagnostic(`${checked} charts checked in the screenshot; ${colours.size} colours`);
  });
});
