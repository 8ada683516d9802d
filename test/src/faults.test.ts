/**
 * The fault campaign (test/src/faults/campaign.ts) at ci size, one test per scenario so that
 * one failing does not hide the others. Each test asserts what the README promises under that
 * fault: nothing the sender was told is delivered goes missing, no process crashes, every
 * failure is a typed hybridbus error, duplicates only where delivery is at-least-once, and the
 * scenario's own property (the fuzz flood does not disturb legitimate calls, no unauthorized
 * message gets through, calls survive a name-service outage, the cluster's topology recovers).
 * The whole table is printed at the end (`npm run faults` prints the same).
 */
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import * as core from '@hybridbus/core';
import { formatTable, runScenario, type ScenarioResult } from './faults/campaign.js';
import { missing } from './faults/kit.js';
import { scenarios } from './faults/scenarios/index.js';
import { formatRejected, type FaultCounts } from './faults/types.js';

const results: ScenarioResult[] = [];
after(() => {
  if (results.length) console.log(`\nfault campaign (ci size):\n${formatTable(results)}`);
});

/**
 * Where a message may legitimately arrive twice (README, zmq-direct "No silent loss": at-least-once
 * across servers; rabbit-brokered "recovery": resends what was not confirmed).
 */
const AT_LEAST_ONCE = new Set(['zmq-acked-kill', 'zmq-frozen-server', 'rabbit-restart-notify', 'rabbit-cluster-failover']);

/** Every error class @hybridbus/core exports: a failure of another class is not "typed". */
const TYPED = new Set(
  Object.values(core)
    .filter((v): v is typeof core.HybridbusError => typeof v === 'function' && (v === core.HybridbusError || v.prototype instanceof core.HybridbusError))
    .map((v) => v.name),
);

const fact = (c: FaultCounts, name: string): number => {
  const v = c.facts?.[name];
  assert.equal(typeof v, 'number', `the scenario reports ${name}`);
  return v as number;
};

/** What each scenario must show besides the common checks. */
const SPECIFIC: Record<string, (c: FaultCounts, m: (what: string) => string) => void> = {
  'zmq-fuzz': (c, m) => {
    assert.ok(c.sent > 0, m('legitimate calls were made during the flood'));
    assert.equal(c.resolved, c.sent, m(`every legitimate call succeeds during the flood (rejected: ${formatRejected(c.rejected)})`));
    assert.equal(fact(c, 'serverAlive'), 1, m('the server survives the flood'));
    // What a flood may leave behind is bounded: the ids of casts it made look valid, at most
    // dedup_max of them, and nothing per garbage frame (400 casts with 256 KiB ids once took
    // a server from 12 to 110 MB of heap).
    const grew = fact(c, 'heapAfter') - fact(c, 'heapBefore');
    assert.ok(grew < 48 * 2 ** 20, m(`the server's heap after GC grew ${(grew / 2 ** 20).toFixed(1)} MiB over the flood`));
  },
  'zmq-curve-unauthorized': (c, m) => {
    assert.ok(fact(c, 'allowedSent') > 0);
    assert.equal(fact(c, 'allowedResolved'), fact(c, 'allowedSent'), m('the allowed client gets through (so "nothing got through" means something)'));
    assert.equal(fact(c, 'allowedReceived'), fact(c, 'allowedSent'));
    assert.equal(c.received, 0, m('no unauthorized message reaches the endpoint'));
    assert.equal(c.resolved, 0, m('no unauthorized send is reported delivered'));
    assert.deepEqual(c.rejected, { AuthenticationFailed: fact(c, 'attemptsPlanned') }, m('every attempt of every unauthorized client is refused with AuthenticationFailed'));
  },
  'redis-outage': (c, m) => {
    assert.ok(fact(c, 'sentDuringOutage') > 0, m('calls were made while Redis was down'));
    assert.equal(fact(c, 'okDuringOutage'), fact(c, 'sentDuringOutage'), m('calls to known servers succeed while Redis is down (cached lookups)'));
    assert.deepEqual(c.rejected, {}, m('no call fails before, during or after the outage'));
    assert.equal(fact(c, 'reregistered'), 2, m('both servers register again in the restarted (empty) Redis'));
  },
  'rabbit-cluster-failover': (c, m) => {
    assert.ok(fact(c, 'victimConnections') > 0, m('the killed node carried client connections'));
    assert.equal(fact(c, 'missingQueues'), 0, m('every quorum queue is still there'));
    assert.equal(fact(c, 'missingBindings'), 0, m('every binding is back'));
    assert.equal(fact(c, 'queuesWithFewerConsumers'), 0, m('every consumer is back'));
    assert.equal(fact(c, 'queuesWithExtraConsumers'), 0, m('no consumer is doubled'));
    assert.ok(fact(c, 'tailSent') > 0, m('the flows ran on after the clients had time to recover'));
    assert.equal(fact(c, 'tailFailures'), 0, m('the flows recover: sends started 8 s after the kill succeed'));
  },
  'sentinel-failover': (c, m) => {
    assert.deepEqual(c.rejected, {}, m('calls keep flowing through the failover'));
    assert.equal(fact(c, 'refreshedOnNewMaster'), 2, m('both servers write their registrations to the new master'));
    assert.equal(fact(c, 'newServerCallsOk'), fact(c, 'newServerCallsSent'), m('a server started after the failover is found and called'));
  },
};

for (const s of scenarios) {
  const skip = missing(s.needs);
  test(s.name, { timeout: 300_000, ...(skip ? { skip } : {}) }, async (t) => {
    const r = await runScenario(s, 'ci');
    results.push(r);
    t.diagnostic(formatTable([r]));
    if (!r.counts) assert.fail(`the scenario did not complete: ${r.error ?? r.skipped}`);
    const c = r.counts;
    const why = `\n  note: ${c.note ?? ''}`;
    assert.equal(c.crashed, 0, `no process crashes${why}`);
    assert.equal(c.lost, 0, `nothing reported delivered goes unhandled${why}`);
    assert.equal(fact(c, 'unsettled'), 0, `every send resolves or rejects${why}`);
    const untyped = Object.keys(c.rejected).filter((k) => !TYPED.has(k));
    assert.deepEqual(untyped, [], `every failure is a typed hybridbus error${why}`);
    if (!AT_LEAST_ONCE.has(s.name)) assert.equal(c.duplicated, 0, `no duplicates${why}`);
    SPECIFIC[s.name]?.(c, (what) => `${what}${why}`);
  });
}
