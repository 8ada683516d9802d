/**
 * The conformance suite on zmq:// with multicast fanouts, run by zmq-multicast.test.ts inside a
 * network namespace of its own (`node conformance-multicast.js [all]`): the fanout cases by
 * default, every case with "all". Not named *.test.js: `node --test test/dist/` must not run it
 * on the host's network.
 */
import type { Bus } from '@hybridbus/core';
import { registerDriver } from '@hybridbus/core/driver';
import { zmqDriverFactory, type ZmqDriver } from '@hybridbus/zmq-direct';
import assert from 'node:assert/strict';
import { after } from 'node:test';
import { CASES, conformance } from '../conformance/suite.js';
import { tempDir } from '../util.js';

// Every zmq driver the suite makes is kept, to show at the end that fanouts really went by multicast.
const drivers: ZmqDriver[] = [];
registerDriver({
  ...zmqDriverFactory,
  create: (url, context) => {
    const d = zmqDriverFactory.create(url, context) as ZmqDriver;
    drivers.push(d);
    return d;
  },
});
after(async () => {
  let sent = 0;
  let delivered = 0;
  for (const d of drivers) {
    const c = await d.counters();
    sent += c['mcastFanouts'] ?? 0;
    delivered += c['mcastDelivered'] ?? 0;
  }
  console.log(`# multicast fanouts sent ${sent}, delivered ${delivered}`);
  assert.ok(sent > 0 && delivered >= sent, 'the fanout cases went by multicast');
});

const dir = tempDir('hb-ns-mc-');
const all = process.argv[2] === 'all';
conformance(
  {
    name: 'zmq:// with multicast fanouts (local name service)',
    config: () => ({ transports: { default: `zmq://?matchmaker=local:${dir}&heartbeat_interval=200&ns_cache=0&multicast=udp://239.192.0.1:5555&multicast_interface=lo` } }),
    crash: (bus: Bus) => (bus.transport('default') as ZmqDriver).close(),
    noServerTimeout: 2000,
  },
  all ? CASES : CASES.filter((c) => c.pattern === 'fanout' || /fanout/i.test(c.name)),
);
