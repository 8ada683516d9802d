import { type Bus } from '@hybridbus/core';
import { MemoryDriver } from '@hybridbus/core/driver';
import { randomUUID } from 'node:crypto';
import { conformance } from './conformance/suite.js';

// Every bus made from this config is a "process" on one in-memory hub.
const hub = `conformance-${randomUUID().slice(0, 8)}`;
conformance({
  name: 'memory://',
  config: () => ({ transports: { default: `memory://${hub}` } }),
  crash: (bus: Bus) => (bus.transport('default') as MemoryDriver).crash(),
});
