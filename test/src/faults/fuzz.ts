/**
 * Garbage for a zmq:// server, by kind: what a broken or hostile peer could put on a ZMTP
 * connection to it. The wire format it bends is packages/zmq-direct/src/frames.ts:
 * [VERSION "HB2", frame, ...], a frame holding records separated by "\n", a record a kind byte
 * and a JSON object { i, k, m, t, pool, ... }. Seeded, so a run can be repeated.
 *
 * Nothing generated here is a valid call of the endpoint method `work` with a string `id`:
 * the server counts exactly those as legitimate deliveries (child.ts), so garbage can never be
 * mistaken for (or inflate) the legitimate traffic.
 */

/** mulberry32: small, fast, good enough to pick garbage. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface FuzzContext {
  /** The name-service key the server serves (so some garbage reaches dispatch). */
  readonly key: string;
  /** The server's max_message_size. */
  readonly maxMessageSize: number;
}

const VERSION = 'HB2';
const KINDS = 'csfnrkx';

/** Weighted kinds; the weights are per mille of frames. */
export const FUZZ_KINDS = [
  ['random-bytes', 200],
  ['bad-version', 100],
  ['bad-json', 150],
  ['wrong-types', 180],
  ['bad-oslo', 140],
  ['huge-id', 40],
  ['oversize-record', 20],
  ['oversize-frame', 2],
  ['multi-record', 80],
  ['invalid-utf8', 30],
  ['server-kinds', 28],
  ['many-frames', 30],
] as const;

export type FuzzKind = (typeof FUZZ_KINDS)[number][0];

export class Fuzzer {
  private readonly rnd: () => number;
  private readonly table: FuzzKind[] = [];

  constructor(
    seed: number,
    private readonly ctx: FuzzContext,
  ) {
    this.rnd = prng(seed);
    for (const [kind, w] of FUZZ_KINDS) for (let i = 0; i < w; i++) this.table.push(kind);
  }

  private int(n: number): number {
    return Math.floor(this.rnd() * n);
  }
  private pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)] as T;
  }
  private bytes(n: number): Buffer {
    const b = Buffer.allocUnsafe(n);
    for (let i = 0; i < n; i++) b[i] = this.int(256);
    return b;
  }
  private junkValue(depth = 0): unknown {
    switch (this.int(depth > 2 ? 6 : 9)) {
      case 0:
        return null;
      case 1:
        return this.int(2) === 0;
      case 2:
        return this.pick([0, -1, 1e308, -0, 2 ** 53 + 1, 0.5]);
      case 3:
        return this.bytes(this.int(12)).toString('latin1');
      case 4:
        return '';
      case 5:
        return this.pick(['__proto__', 'constructor', 'toString', '\u0000', '\ud800', 'é'.repeat(this.int(50))]);
      case 6:
        return Array.from({ length: this.int(4) }, () => this.junkValue(depth + 1));
      case 7:
        return { [this.pick(['a', '__proto__', 'method', 'args', ''])]: this.junkValue(depth + 1) };
      default:
        return { x: this.junkValue(depth + 1), y: this.junkValue(depth + 1) };
    }
  }
  /** A method name that is never `work`: garbage must not count as legitimate traffic. */
  private method(): unknown {
    return this.pick(['fuzz', 'nope', '_private', 'constructor', '__proto__', 'toString', 'hasOwnProperty', '', 7, null, ['work'], { work: 1 }]);
  }
  /** An oslo request dict with something wrong in it. */
  private badOslo(): Record<string, unknown> {
    const m: Record<string, unknown> = { method: this.method(), args: { id: this.int(1000) }, namespace: null, version: '1.0' };
    switch (this.int(8)) {
      case 0:
        delete m['method'];
        break;
      case 1:
        m['args'] = this.pick([[], 'args', 5, null]);
        break;
      case 2:
        m['version'] = this.pick([5, '', 'x.y', '1.0.0.0', '99.99', null, []]);
        break;
      case 3:
        m['namespace'] = this.junkValue();
        break;
      case 4:
        m['_context_request_id'] = this.junkValue();
        m['_unique_id'] = this.junkValue();
        break;
      case 5:
        // the legitimate method, but an id that is not a string: dispatched, never counted
        m['method'] = 'work';
        m['args'] = { id: this.pick([1, null, [], { s: 'x' }, true]) };
        break;
      case 6:
        m['oslo.version'] = this.pick(['2.0', '9.9', 2]);
        m['oslo.message'] = this.pick(['{', '{}', 'null', '[]', this.bytes(20).toString('latin1')]);
        break;
      default:
        m['args'] = this.junkValue();
    }
    return m;
  }
  private record(kind?: string): string {
    const k = kind ?? this.pick([...KINDS]);
    const body: Record<string, unknown> = {};
    if (this.int(2)) body['i'] = `fz${this.int(1e6)}`;
    body['k'] = this.int(3) ? this.ctx.key : this.pick(['', 'openstack/none', this.ctx.key + '.nosuch']);
    body['m'] = this.badOslo();
    if (k === 'n') body['pool'] = this.pick(['', 'p']);
    return k + JSON.stringify(body);
  }

  /** The next garbage message (its frames) and its kind. */
  next(): { kind: FuzzKind; frames: Buffer[] } {
    const kind = this.pick(this.table);
    const V = Buffer.from(VERSION);
    const max = this.ctx.maxMessageSize;
    let frames: Buffer[];
    switch (kind) {
      case 'random-bytes':
        frames = Array.from({ length: 1 + this.int(3) }, () => this.bytes(this.int(257)));
        break;
      case 'bad-version':
        frames = [this.pick([Buffer.from('HB1'), Buffer.from('HB3'), Buffer.from('hb2'), Buffer.alloc(0), this.bytes(3), Buffer.from('HB2\0'), Buffer.from('HB22')]), Buffer.from(this.record('c'))];
        break;
      case 'bad-json': {
        const r = this.record();
        const cut = r.slice(0, 1 + this.int(Math.max(1, r.length - 1)));
        frames = [V, Buffer.from(this.pick([cut, `${r[0]}{`, `${r[0]}{"i":`, `${r[0]}nul`, `${r[0]}{"i":"a","i":"b"`, `${r[0]}[]`, `${r[0]}"str"`, `${r[0]}1e999`, r[0] ?? 'c']))];
        break;
      }
      case 'wrong-types': {
        const body: Record<string, unknown> = { i: `fz${this.int(1e6)}`, k: this.ctx.key, m: { method: 'fuzz', args: {} } };
        const field = this.pick(['i', 'k', 'm', 't', 'pool', 'code', 'error']);
        body[field] = this.pick([5, -1, null, true, [], ['x'], { a: 1 }, 1e308, 'x'.repeat(this.int(100))]);
        frames = [V, Buffer.from(this.pick([...KINDS]) + JSON.stringify(body))];
        break;
      }
      case 'bad-oslo':
        frames = [V, Buffer.from(this.record(this.pick(['c', 's', 'f', 'n'])))];
        break;
      case 'huge-id': {
        const idLen = Math.min(max - 200, 1000 + this.int(Math.max(1, max - 1200)));
        const body = { i: 'I'.repeat(Math.max(1, idLen)), k: this.ctx.key, m: { method: 'fuzz', args: {} } };
        frames = [V, Buffer.from(this.pick(['c', 's']) + JSON.stringify(body))];
        break;
      }
      case 'oversize-record':
        // over max_message_size but within ZeroMQ's limit (max + 1024): the driver's own check
        frames = [V, Buffer.from(`c${JSON.stringify({ i: 'fzbig', k: this.ctx.key, m: { method: 'fuzz', args: { p: 'x'.repeat(max) } } })}`.slice(0, max + 500))];
        break;
      case 'oversize-frame':
        // over ZeroMQ's maxMessageSize: libzmq drops the connection (the DEALER reconnects)
        frames = [V, Buffer.alloc(max + 4096 + this.int(4096), 0x61)];
        break;
      case 'multi-record': {
        const parts = Array.from({ length: 2 + this.int(20) }, () => (this.int(3) ? this.record() : this.bytes(this.int(40)).toString('latin1')));
        if (this.int(4) === 0) parts.push('', '', '');
        frames = [V, Buffer.from(parts.join('\n'))];
        break;
      }
      case 'invalid-utf8':
        frames = [V, Buffer.concat([Buffer.from('c{"i":"fzu","k":"'), Buffer.from([0xff, 0xfe, 0xc0, 0x80, 0xed, 0xa0, 0x80]), Buffer.from(`","m":{"method":"fuzz","args":{}}}`)])];
        break;
      case 'server-kinds':
        frames = [V, Buffer.from(`${this.pick(['r', 'k', 'x'])}${JSON.stringify({ i: `fz${this.int(100)}`, m: { result: null, failure: null, ending: true }, code: 'HB_MALFORMED', error: 'x' })}`)];
        break;
      case 'many-frames':
        frames = [V, ...Array.from({ length: 50 + this.int(150) }, () => (this.int(2) ? Buffer.from(this.record()) : this.bytes(this.int(30))))];
        break;
    }
    return { kind, frames };
  }
}
