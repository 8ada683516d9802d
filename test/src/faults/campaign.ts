/**
 * The fault campaign: runs the scenarios of scenarios/index.ts one after the other and prints
 * one table (scenario | sent | resolved | rejected | received | lost | duplicated | crashed),
 * then a note and the duration per scenario.
 *
 *   npm run faults                                         # ci size (a few minutes)
 *   node test/dist/faults/campaign.js --full               # the sizes of the brief: 1,000,000 garbage frames, 30 s outages, ...
 *   node test/dist/faults/campaign.js --only zmq-fuzz,redis-outage
 *
 * Exit status 1 when a scenario failed to run, lost a message or had a process crash.
 * test/src/faults.test.ts runs the same scenarios at ci size and asserts on their counts.
 */
import { fileURLToPath } from 'node:url';
import { missing } from './kit.js';
import { killAll } from './procs.js';
import { scenarios } from './scenarios/index.js';
import { formatRejected, type FaultCounts, type Scenario } from './types.js';

export interface ScenarioResult {
  name: string;
  ms: number;
  counts?: FaultCounts;
  skipped?: string;
  error?: string;
}

/** Upper bound of one scenario, after which its processes are killed (its own waits are bounded too). */
const WATCHDOG_MS = { ci: 240_000, full: 3_600_000 };

/** Runs one scenario (or says why it cannot run here); never throws. */
export async function runScenario(s: Scenario, size: 'ci' | 'full'): Promise<ScenarioResult> {
  const why = missing(s.needs);
  if (why) return { name: s.name, ms: 0, skipped: why };
  const t0 = performance.now();
  let timer: NodeJS.Timeout | undefined;
  const watchdog = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      // Killing its processes makes whatever the scenario waits for reject, so its cleanup runs.
      killAll();
      reject(new Error(`watchdog: ${s.name} took longer than ${WATCHDOG_MS[size] / 1000} s; its processes were killed`));
    }, WATCHDOG_MS[size]);
  });
  try {
    const counts = await Promise.race([s.run(size), watchdog]);
    return { name: s.name, ms: performance.now() - t0, counts };
  } catch (err) {
    return { name: s.name, ms: performance.now() - t0, error: (err as Error)?.stack ?? String(err) };
  } finally {
    clearTimeout(timer);
  }
}

const COLUMNS = ['scenario', 'sent', 'resolved', 'rejected', 'received', 'lost', 'duplicated', 'crashed'] as const;

/** The table, and under it one line per scenario: duration and note (or why it did not run). */
export function formatTable(results: readonly ScenarioResult[]): string {
  const rows = results.map((r) => {
    const c = r.counts;
    if (!c) return [r.name, r.skipped ? 'skipped' : 'ERROR', '', '', '', '', '', ''];
    return [r.name, String(c.sent), String(c.resolved), formatRejected(c.rejected), String(c.received), String(c.lost), String(c.duplicated), String(c.crashed)];
  });
  const widths = COLUMNS.map((h, i) => Math.max(h.length, ...rows.map((row) => (row[i] ?? '').length)));
  const line = (cells: readonly string[]): string => `| ${cells.map((cell, i) => (i === 0 || i === 3 ? cell.padEnd(widths[i] ?? 0) : cell.padStart(widths[i] ?? 0))).join(' | ')} |`;
  const out = [line(COLUMNS), `|${widths.map((w, i) => (i === 0 || i === 3 ? `-${'-'.repeat(w)}-` : `-${'-'.repeat(w)}:`)).join('|')}|`, ...rows.map(line), ''];
  for (const r of results) {
    const detail = r.skipped ? `skipped: ${r.skipped}` : r.error ? `error: ${r.error.split('\n').slice(0, 3).join(' ')}` : (r.counts?.note ?? '');
    const facts = r.counts?.facts?.['unsettled'] ? ` [${r.counts.facts['unsettled']} sends never settled]` : '';
    out.push(`${r.name} (${(r.ms / 1000).toFixed(1)} s): ${detail}${facts}`);
  }
  return out.join('\n');
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const size = args.includes('--full') ? 'full' : 'ci';
  const onlyAt = args.indexOf('--only');
  const only = onlyAt >= 0 ? new Set((args[onlyAt + 1] ?? '').split(',').filter(Boolean)) : undefined;
  const unknown = [...(only ?? [])].filter((n) => !scenarios.some((s) => s.name === n));
  if (unknown.length || args.some((a) => a.startsWith('-') && !['--full', '--only'].includes(a))) {
    process.stderr.write(`usage: campaign.js [--full] [--only name,...]\nscenarios: ${scenarios.map((s) => s.name).join(', ')}\n`);
    process.exit(2);
  }
  const chosen = scenarios.filter((s) => !only || only.has(s.name));
  const results: ScenarioResult[] = [];
  for (const s of chosen) {
    process.stderr.write(`faults: ${s.name} (${size})...\n`);
    const r = await runScenario(s, size);
    process.stderr.write(`faults: ${s.name} ${r.skipped ? 'skipped' : r.error ? 'ERROR' : 'done'} in ${(r.ms / 1000).toFixed(1)} s\n`);
    results.push(r);
  }
  process.stdout.write(`${formatTable(results)}\n`);
  const bad = results.filter((r) => r.error || (r.counts && (r.counts.lost > 0 || r.counts.crashed > 0)));
  process.exit(bad.length ? 1 : 0);
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) await main();
