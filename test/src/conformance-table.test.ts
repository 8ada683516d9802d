/** The conformance table itself (conformance/suite.ts): its rows, its groups and when a row is skipped. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Bus, DriverCapabilities, Pattern } from '@hybridbus/core';
import { byGroup, CASES, runCase, skipReason, type ConformanceCase, type ConformanceEnv } from './conformance/suite.js';

const every: DriverCapabilities = { durable: true, brokerless: true, pools: true, requeue: true, callMonitor: true, broadcast: true };
const routed: string[] = [];
/** A router's bus: notify over "broker" (no pools, no requeue), every other pattern over "direct". */
const probe = {
  route: (topic: string, pattern: Pattern) => (routed.push(topic), pattern === 'notify' ? 'broker' : 'direct'),
  transport: (name: string) => ({ capabilities: name === 'broker' ? { ...every, pools: false, requeue: false } : every }),
} as unknown as Pick<Bus, 'route' | 'transport'>;

const row = (name: string, fields: Partial<ConformanceCase> = {}): ConformanceCase => ({ name, pattern: 'call', run: async () => undefined, ...fields });

test('every case of the table has a name of its own', () => {
  const names = CASES.map((c) => `${c.group ?? ''} > ${c.name}`);
  assert.equal(new Set(names).size, names.length);
});

test('the groups of the table each stand together; a group split in two is refused', () => {
  assert.deepEqual(
    byGroup(CASES).map((r) => r.group),
    [undefined, 'namespaces and versions', 'access policy', undefined, 'call monitoring', 'notifications', 'health and stats'],
  );
  assert.throws(() => byGroup([row('a', { group: 'g' }), row('b'), row('c', { group: 'g' })]), /group "g"/);
});

test('the skip reason names the transport, the pattern and every missing capability', () => {
  assert.equal(skipReason(probe, 't', 'notify', ['requeue']), 'transport "broker", which carries notify, does not declare requeue');
  assert.equal(skipReason(probe, 't', 'notify', ['durable', 'pools', 'requeue']), 'transport "broker", which carries notify, does not declare pools, requeue');
  assert.equal(skipReason(probe, 't', 'call', ['requeue', 'callMonitor']), undefined);
  assert.equal(skipReason(probe, 't', 'notify', []), undefined);
});

test("a case its pattern's transport cannot serve is skipped and never run; the others run on the topic checked", async () => {
  const ran: string[] = [];
  const skips: Array<string | undefined> = [];
  const t = { skip: (reason?: string) => void skips.push(reason) };
  const env = (topic: string) => ({ topic }) as ConformanceEnv;
  const needsRequeue = (pattern: Pattern) => row(pattern, { pattern, needs: ['requeue'], topicPrefix: 'x', run: async (e) => void ran.push(e.topic) });
  routed.length = 0;
  await runCase(needsRequeue('notify'), probe, t, env);
  await runCase(needsRequeue('call'), probe, t, env);
  assert.deepEqual(skips, ['transport "broker", which carries notify, does not declare requeue']);
  assert.equal(ran.length, 1);
  assert.match(ran[0] as string, /^x-/);
  assert.deepEqual(routed.slice(1), ran, 'the route checked is that of the topic the case runs on');
});
