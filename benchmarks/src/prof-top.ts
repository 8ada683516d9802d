/**
 * Summarises a V8 .cpuprofile (from `npm run bench:zmq -- --cpu-prof`): the functions with the
 * most self time and the most total (inclusive) time, as a share of all samples.
 *
 *   node benchmarks/dist/prof-top.js bench-results/profiles/throughput256-r1-hb-client.cpuprofile [N]
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';

interface Node {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface Profile {
  nodes: Node[];
  samples: number[];
  timeDeltas: number[];
}

const [file, top = '25'] = process.argv.slice(2);
if (!file) {
  process.stderr.write('usage: prof-top.js FILE.cpuprofile [N]\n');
  process.exit(2);
}
const prof = JSON.parse(readFileSync(file, 'utf8')) as Profile;
process.stdout.on('error', () => undefined); // e.g. piped into `head`
const byId = new Map(prof.nodes.map((n) => [n.id, n]));
const parent = new Map<number, number>();
for (const n of prof.nodes) for (const c of n.children ?? []) parent.set(c, n.id);

const where = (n: Node): string => {
  const { functionName, url, lineNumber } = n.callFrame;
  const file = url ? `${url.includes('node_modules') ? url.slice(url.lastIndexOf('node_modules/') + 13) : path.basename(url)}:${lineNumber + 1}` : '';
  return `${functionName || '(anonymous)'} ${file}`.trim();
};

const self = new Map<string, number>();
const total = new Map<string, number>();
let all = 0;
prof.samples.forEach((id, i) => {
  const dt = prof.timeDeltas[i] ?? 0;
  all += dt;
  const leaf = byId.get(id);
  if (!leaf) return;
  self.set(where(leaf), (self.get(where(leaf)) ?? 0) + dt);
  const seen = new Set<string>();
  for (let n: Node | undefined = leaf; n; n = byId.get(parent.get(n.id) ?? -1)) {
    const w = where(n);
    if (seen.has(w)) continue;
    seen.add(w);
    total.set(w, (total.get(w) ?? 0) + dt);
  }
});

const show = (title: string, m: Map<string, number>): void => {
  process.stdout.write(`\n${title} (of ${(all / 1e6).toFixed(2)} s sampled)\n`);
  for (const [w, t] of [...m].sort((a, b) => b[1] - a[1]).slice(0, Number(top))) {
    process.stdout.write(`${((100 * t) / all).toFixed(1).padStart(6)}%  ${w}\n`);
  }
};
show('self time', self);
show('total time', total);
