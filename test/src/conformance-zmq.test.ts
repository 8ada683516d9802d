import type { Bus } from '@hybridbus/core';
import '@hybridbus/zmq-direct';
import type { ZmqDriver } from '@hybridbus/zmq-direct';
import { conformance } from './conformance/suite.js';
import { tempDir } from './util.js';

// Every bus is a "process" with its own sockets; they find each other through a private
// local (directory) name service.
const dir = tempDir('hb-ns-');
conformance({
  name: 'zmq:// (local name service)',
  config: () => ({ transports: { default: `zmq://?matchmaker=local:${dir}&heartbeat_interval=200&ns_cache=0` } }),
  crash: (bus: Bus) => (bus.transport('default') as ZmqDriver).close(),
  noServerTimeout: 2000,
});
