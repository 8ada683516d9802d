/**
 * The driver kit's shared pieces that need no transport: RecentIds (the duplicate filter every
 * driver's server keeps).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Limiter, RecentIds, SeenIds } from '@hybridbus/core/driver';

/** Operations per millisecond of `fn` over `n` calls (a rate measured within this test, only compared with another). */
function opsPerMs(n: number, fn: (i: number) => void): number {
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) fn(i);
  return n / (Number(process.hrtime.bigint() - t0) / 1e6);
}

describe('RecentIds', () => {
  it('forgets the oldest first once full, and counts them', () => {
    const ids = new SeenIds({ max: 3 });
    for (const id of ['a', 'b', 'c', 'd']) ids.add(id);
    assert.equal(ids.has('a'), false);
    assert.deepEqual(['b', 'c', 'd'].map((id) => ids.has(id)), [true, true, true]);
    assert.equal(ids.size, 3);
    assert.equal(ids.evicted, 1);
  });

  it('a known id keeps its place and takes the new value', () => {
    const ids = new RecentIds<number>({ max: 2 });
    ids.set('a', 1);
    ids.set('b', 2);
    ids.set('a', 3);
    assert.equal(ids.get('a'), 3);
    ids.set('c', 4); // 'a' is still the oldest
    assert.equal(ids.get('a'), undefined);
    assert.equal(ids.get('b'), 2);
  });

  it('update() changes a remembered id in place and never remembers a forgotten one', () => {
    const ids = new RecentIds<boolean>({ max: 2 });
    ids.set('a', false);
    ids.set('b', false);
    assert.equal(ids.update('a', true), true);
    assert.equal(ids.get('a'), true);
    ids.set('c', false); // 'a' is still the oldest: forgotten
    assert.equal(ids.update('a', true), false);
    assert.equal(ids.get('a'), undefined);
    assert.equal(ids.size, 2);
  });

  it('forgets ids older than ttlMs without counting them as evicted', async (t) => {
    t.mock.timers.enable({ apis: ['Date'], now: 1_000 });
    const ids = new SeenIds({ max: 10, ttlMs: 100 });
    ids.add('a');
    ids.add('b');
    t.mock.timers.tick(50);
    ids.add('c');
    t.mock.timers.tick(60);
    assert.equal(ids.has('a'), false);
    ids.add('d');
    assert.equal(ids.size, 2); // b went with a at d's arrival, c and d remain
    assert.deepEqual(['b', 'c', 'd'].map((id) => ids.has(id)), [false, true, true]);
    assert.equal(ids.evicted, 0);
    // An id forgotten by age and seen again is new: it is remembered from now, and ages anew.
    ids.add('a');
    t.mock.timers.tick(60);
    assert.equal(ids.has('a'), true);
    assert.equal(ids.has('c'), false);
  });

  // A full filter is the steady state of a busy server. Forgetting the oldest used to walk a new
  // Map iterator over every hole earlier deletions left (V8 keeps them until it rehashes): at
  // 100,000 ids each new id cost 30-100 µs, a thousand times an empty filter's cost.
  it('a new id costs about the same whether the filter is full of 100,000 ids or nearly empty', () => {
    const work = (max: number): number => {
      const ids = new SeenIds({ max, ttlMs: 60_000 });
      for (let i = 0; i < max; i++) ids.add(`warm ${i}`);
      return opsPerMs(100_000, (i) => {
        const id = `topic ${i} 0123456789abcdef0123456789abcdef`;
        if (!ids.has(id)) ids.add(id);
      });
    };
    work(1_000); // compile
    const small = work(1_000);
    const full = work(100_000);
    assert.ok(full > small / 10, `${full.toFixed(0)} ids/ms with 100,000 remembered against ${small.toFixed(0)} with 1,000`);
  });
});

describe('Limiter', () => {
  it('a task that returns no promise is over when it returns: its slot is free at once', async () => {
    const limiter = new Limiter(1);
    assert.equal(limiter.run(() => 7), 7);
    assert.equal(limiter.size, 0);
    const thrown = limiter.run((): number => {
      throw new Error('sync failure');
    });
    assert.equal(limiter.size, 0, 'a task that throws frees its slot too');
    await assert.rejects(thrown as Promise<number>, /sync failure/);
  });

  it('a task that returns a promise holds its slot until it settles; the next waits its turn', async () => {
    const limiter = new Limiter(1);
    let release!: () => void;
    const first = limiter.run(() => new Promise<void>((r) => (release = r)));
    const order: string[] = [];
    const second = limiter.run(() => void order.push('second ran'));
    assert.equal(limiter.size, 2);
    assert.deepEqual(order, [], 'the second waits for the slot');
    release();
    await first;
    await second;
    assert.deepEqual(order, ['second ran']);
    assert.equal(limiter.size, 0);
    await limiter.drain();
  });

  it('a task that returns a thenable that is not a native promise holds its slot until it settles', async () => {
    const limiter = new Limiter(1);
    let settle!: () => void;
    const thenable = { then: (ok: () => void) => void (settle = ok) };
    limiter.run(() => thenable as unknown as Promise<void>);
    assert.equal(limiter.size, 1);
    let drained = false;
    const drain = limiter.drain().then(() => (drained = true));
    await Promise.resolve();
    assert.equal(drained, false);
    settle();
    await drain;
    assert.equal(limiter.size, 0);
  });
});
