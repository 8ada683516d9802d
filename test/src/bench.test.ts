/** `hybridbus bench` as a user runs it: bad input, a quick run on the embedded default, and one with RabbitMQ. */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { CPU_COLUMN_NOTE, DEFAULTS, defaultContenders, QUICK, registerContender, runBench, type BenchReport } from '@hybridbus/benchmarks';
import { sharedServers, startRabbitMQ } from './harness/launcher.js';
import { tempDir } from './util.js';

const bin = join(createRequire(import.meta.url).resolve('@hybridbus/cli/package.json'), '..', 'dist', 'main.js');
const dir = tempDir('hb-bench-test-');
/** Tiny settings: this checks the plumbing, not the figures. */
const TINY = ['--quick', '--duration-ms', '150', '--warmup-ms', '50', '--warmup-calls', '100', '--latency-calls', '200', '--fanout-servers', '3', '--fanout-probes', '2', '--inflight', '4'];

function bench(args: string[], timeoutMs = 120_000): Promise<{ code: number; stdout: string; stderr: string }> {
  // Without HYBRIDBUS_* from the caller's environment, so the embedded default is what runs.
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('HYBRIDBUS_')));
  return new Promise((resolve) => {
    execFile(process.execPath, [bin, 'bench', ...args], { env, timeout: timeoutMs }, (err, stdout, stderr) =>
      resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

/**
 * A contender written in Python, speaking the child protocol over NODE_CHANNEL_FD (JSON lines):
 * a TCP line echo, latency only. It shows the protocol works for a non-Node child.
 */
const PY_CHILD = `
import json, os, socket, sys, threading, time
spec = json.loads(sys.argv[-1])
ipc = socket.socket(fileno=int(os.environ['NODE_CHANNEL_FD']))
commands = ipc.makefile('r')
def send(m): ipc.sendall((json.dumps(m) + '\\n').encode())
if spec['role'] == 'server':
    lsn = socket.create_server(('127.0.0.1', 0))
    def echo(conn):
        f = conn.makefile('rb')
        for line in f: conn.sendall(line)
    def accept():
        while True: threading.Thread(target=echo, args=(lsn.accept()[0],), daemon=True).start()
    threading.Thread(target=accept, daemon=True).start()
    send({'kind': 'ready', 'endpoints': ['127.0.0.1:%d' % lsn.getsockname()[1]]})
    for line in commands:
        m = json.loads(line)
        if m['kind'] == 'cpu': send({'kind': 'cpu', 'us': time.process_time() * 1e6})
        if m['kind'] == 'exit': sys.exit(0)
else:
    host, port = spec['endpoints'][0].split(':')
    conn = socket.create_connection((host, int(port)))
    replies = conn.makefile('rb')
    body = b'x' * spec['payload']['sizes'][0] + b'\\n'
    send({'kind': 'ready'})
    for line in commands:
        m = json.loads(line)
        if m['kind'] == 'exit': sys.exit(0)
        c0, t0, times = time.process_time(), time.perf_counter(), []
        for _ in range(m['count']):
            t = time.perf_counter()
            conn.sendall(body)
            replies.readline()
            times.append((time.perf_counter() - t) * 1e6)
        times.sort()
        at = lambda p: times[min(len(times) - 1, int(len(times) * p / 100))]
        send({'kind': 'done', 'ops': m['count'], 'seconds': time.perf_counter() - t0, 'cpuUs': (time.process_time() - c0) * 1e6,
              'histogram': [[p, at(p)] for p in (50, 90, 99, 99.9)] + [[100, times[-1]]]})
`;

const noStack = (s: string): void => assert.doesNotMatch(s, /^\s+at /m, 'no stack trace');

// Concurrent: these check plumbing, not figures, and RabbitMQ boots while the quick run runs.
describe('hybridbus bench', { concurrency: true }, () => {
  test('bad input: non-zero exit and one line naming the flag', async () => {
    const cases: Array<[string[], RegExp]> = [
      [['--rounds', '0'], /--rounds.*integer ≥ 1/],
      [['--rounds', 'three'], /--rounds.*integer ≥ 1/],
      [['--scenarios', 'latency,speed'], /--scenarios.*"speed".*latency,throughput,cast,fanout,notify/],
      [['--payload', 'big'], /--payload.*oslo/],
      [['--contenders', 'zmq,nope', '--scenarios', 'latency'], /--contenders: unknown "nope"; expected some of .*raw-zeromq/],
    ];
    const runs = await Promise.all(cases.map(([args]) => bench(args)));
    runs.forEach((r, i) => {
      const [args, want] = cases[i] as [string[], RegExp];
      assert.notEqual(r.code, 0, args.join(' '));
      assert.match(r.stderr, want);
      assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
      noStack(r.stderr);
    });
  });

  test('--help lists every contender a run considers, --scenario, and what the cpu column means', async () => {
    const r = await bench(['--help']);
    assert.equal(r.code, 0, r.stderr);
    // The engine's list, as the CLI process has it (this process also has the test's own py-echo).
    for (const id of ['zmq', 'zmq-noack', 'rabbit', 'hybrid', 'raw-zeromq', 'raw-amqplib', 'oslo']) {
      const c = defaultContenders().find((x) => x.id === id);
      assert.ok(c, id);
      assert.match(r.stdout, new RegExp(`^  ${c.id} +${c.label.replace(/[()]/g, '\\$&')}$`, 'm'), c.id);
    }
    assert.match(r.stdout, /--scenario <list> +the same as --scenarios/);
    assert.ok(r.stdout.includes(CPU_COLUMN_NOTE), 'the cpu column is explained');
  });

  test('an unreachable --rabbit-url skips rabbit with one line and exits 0', async () => {
    const json = join(dir, 'skip.json');
    const r = await bench(['--rabbit-url', 'rabbit://guest:guest@127.0.0.1:1/', '--contenders', 'rabbit,hybrid', '--scenarios', 'latency', '--json', json]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /^skipped rabbit — rabbit: ECONNREFUSED 127\.0\.0\.1:1$/m);
    assert.match(r.stderr, /^skipped hybrid — /m);
    noStack(r.stderr);
    const report = JSON.parse(readFileSync(json, 'utf8')) as BenchReport;
    assert.equal(report.contenders.find((c) => c.id === 'rabbit')?.skipped, 'rabbit: ECONNREFUSED 127.0.0.1:1');
  });

  test('--quick on the embedded default: every scenario for zmq beside raw zeromq.js, acked one-way messages beside raw acked ones', async () => {
    const json = join(dir, 'quick.json');
    const r = await bench([...TINY, '--contenders', 'zmq,raw-zeromq,raw-zeromq-acked', '--json', json, '--html', join(dir, 'quick.html')]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /latency\.p50\s+zmq\s+[\d,.]+\s+µs\s+[\d.]+× raw-zeromq /);
    assert.match(r.stdout, /^cast\s+zmq\s+[\d,.]+\s+msgs\/s\s+[\d.]+× raw-zeromq-acked/m);
    assert.ok(r.stdout.includes(CPU_COLUMN_NOTE), 'the table explains its cpu column');
    // No terminal here, so no progress bar: a line per scenario and round instead.
    const progress = r.stderr.split('\n').filter((l) => /^\[\d+\/5\] round 1 of 1, \w+: /.test(l));
    assert.deepEqual(progress.map((l) => l.replace(/: .*/, '')), ['latency', 'throughput', 'cast', 'fanout', 'notify'].map((sc, i) => `[${i + 1}/5] round 1 of 1, ${sc}`), r.stderr);
    // raw-zeromq-acked has one-way messages only.
    assert.deepEqual(progress.map((l) => l.replace(/^.*: /, '')), ['zmq, raw-zeromq', 'zmq, raw-zeromq', ...Array(3).fill('zmq, raw-zeromq, raw-zeromq-acked')], r.stderr);
    const report = JSON.parse(readFileSync(json, 'utf8')) as BenchReport;
    assert.equal(report.errors, undefined);
    const oneWay = new Set(['cast', 'fanout.3.rate', 'fanout.3.complete', 'notify']);
    for (const m of ['latency.p50', 'latency.p99', 'throughput.4', ...oneWay]) {
      const zmq = report.summaries.find((s) => s.metric === m && s.contender === 'zmq');
      const baseline = oneWay.has(m) ? 'raw-zeromq-acked' : 'raw-zeromq';
      const raw = report.summaries.find((s) => s.metric === m && s.contender === baseline);
      assert.ok(raw && Number.isFinite(raw.median) && raw.median > 0, `${baseline} ${m}`);
      assert.ok(zmq && Number.isFinite(zmq.median) && zmq.median > 0, `zmq ${m}`);
      assert.equal(zmq.baseline, baseline, m);
      assert.ok(Number.isFinite(zmq.ratio), `zmq ${m} ratio`);
    }
    assert.ok(report.summaries.find((s) => s.metric === 'cast' && s.contender === 'zmq')?.cpuUsPerMsg?.server);
    assert.deepEqual(report.metrics.find((m) => m.id === 'latency.p50')?.targets?.['zmq'], { op: '<=', ratio: 1.3 });
    assert.deepEqual(new Set(report.latency?.map((l) => l.contender)), new Set(['zmq', 'raw-zeromq']));
  });

  test('without raw-zeromq-acked in the run, acked zmq one-way messages are compared with PUSH/PULL', async () => {
    const json = join(dir, 'fallback.json');
    const r = await bench([...TINY, '--contenders', 'zmq,raw-zeromq', '--scenarios', 'cast', '--json', json, '--html', join(dir, 'fallback.html')]);
    assert.equal(r.code, 0, r.stderr);
    const report = JSON.parse(readFileSync(json, 'utf8')) as BenchReport;
    assert.equal(report.summaries.find((s) => s.metric === 'cast' && s.contender === 'zmq')?.baseline, 'raw-zeromq');
  });

  test('--cpu-prof writes a readable V8 profile of each server and client process', async () => {
    const prof = join(dir, 'prof');
    const r = await bench([...TINY, '--contenders', 'zmq', '--scenarios', 'cast', '--cpu-prof', prof, '--json', join(dir, 'prof.json'), '--html', join(dir, 'prof.html')]);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(r.stderr.includes(`CPU profiles in ${prof} `), r.stderr);
    const files = readdirSync(prof).sort();
    assert.deepEqual(files.map((f) => f.replace(/\.\d+\.cpuprofile$/, '')), ['zmq.cast.client.0', 'zmq.cast.server.0']);
    for (const f of files) {
      const p = JSON.parse(readFileSync(join(prof, f), 'utf8')) as { nodes: Array<{ callFrame: { url: string } }>; samples: number[] };
      assert.ok(p.samples.length > 0, `${f} has samples`);
      // The child's own code is in it, not only Node's start-up.
      assert.ok(p.nodes.some((n) => n.callFrame.url.includes('/benchmarks/dist/engine/child')), `${f} profiles the bench child`);
    }
  });

  test('a contender in Python speaks the child protocol', async () => {
    const script = join(dir, 'py-child.py');
    writeFileSync(script, PY_CHILD);
    const cmd = { command: 'python3', args: [script] };
    registerContender('py-echo', () => ({
      info: { id: 'py-echo', label: 'python TCP echo', kind: 'raw' },
      scenarios: ['latency'],
      data: {},
      probe: async () => undefined,
      server: () => cmd,
      client: () => cmd,
      baseline: () => undefined,
    }));
    const lines: string[] = [];
    const report = await runBench({
      ...DEFAULTS,
      ...QUICK,
      warmupCalls: 100,
      latencyCalls: 300,
      contenders: ['py-echo'],
      scenarios: ['latency'],
      rabbitUrl: 'rabbit://guest:guest@127.0.0.1:1/',
      pin: false,
      json: join(dir, 'py.json'),
      html: join(dir, 'py.html'),
      command: 'test',
      out: (l) => void lines.push(l),
      note: (l) => void lines.push(l),
    });
    assert.equal(report.errors, undefined, lines.join('\n'));
    const p50 = report.summaries.find((s) => s.metric === 'latency.p50' && s.contender === 'py-echo');
    assert.ok(p50 && p50.median > 0 && Number.isFinite(p50.median), lines.join('\n'));
    assert.ok(p50.cpuUsPerMsg?.client !== undefined && p50.cpuUsPerMsg.server !== undefined);
  });

  describe('with RabbitMQ', () => {
    const servers = sharedServers({ rabbit: () => startRabbitMQ({ plugins: [] }) });

    test('rabbit and hybrid figures, hybrid compared per pattern', async () => {
      const json = join(dir, 'rabbit.json');
      const url = servers.rabbit.url.replace(/^amqp:/, 'rabbit:');
      const r = await bench([...TINY, '--rabbit-url', url, '--contenders', 'rabbit,hybrid,raw-zeromq', '--scenarios', 'latency,fanout,notify', '--json', json]);
      assert.equal(r.code, 0, r.stderr);
      const report = JSON.parse(readFileSync(json, 'utf8')) as BenchReport;
      assert.equal(report.errors, undefined);
      for (const c of ['rabbit', 'hybrid']) {
        for (const m of ['latency.p50', 'fanout.3.rate', 'fanout.3.complete', 'notify']) {
          const s = report.summaries.find((x) => x.metric === m && x.contender === c);
          assert.ok(s && Number.isFinite(s.median) && s.median > 0, `${c} ${m}`);
        }
      }
      // The router carries calls on zmq: compared with raw zeromq; fanout rides rabbit: raw amqplib.
      assert.equal(report.summaries.find((s) => s.metric === 'latency.p50' && s.contender === 'hybrid')?.baseline, 'raw-zeromq');
      assert.ok(Number.isFinite(report.summaries.find((s) => s.metric === 'latency.p50' && s.contender === 'hybrid')?.ratio));
      assert.equal(report.summaries.find((s) => s.metric === 'fanout.3.rate' && s.contender === 'hybrid')?.baseline, 'raw-amqplib');
      assert.equal(report.summaries.find((s) => s.metric === 'notify' && s.contender === 'rabbit')?.baseline, 'raw-amqplib');
    });
  });
});
