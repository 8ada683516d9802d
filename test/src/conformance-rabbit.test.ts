/**
 * The shared conformance suite on rabbit:// against a real RabbitMQ from the launcher. Each bus
 * is a "process" with its own connection; crash() destroys that connection's socket so the
 * broker sees the process vanish (no more replies or heartbeats, no reconnect).
 */
import type { Bus } from '@hybridbus/core';
import '@hybridbus/rabbit-brokered'; // registers rabbit:, amqp:, amqps:
import type { RabbitDriver } from '@hybridbus/rabbit-brokered';
import { conformance } from './conformance/suite.js';
import { startRabbitMQ, type RabbitMQServer } from './harness/launcher.js';

let rabbit: RabbitMQServer | undefined;
conformance({
  name: 'rabbit://',
  setup: async () => {
    rabbit = await startRabbitMQ({ plugins: [] });
  },
  teardown: async () => rabbit?.stop(),
  config: () => ({ transports: { default: (rabbit as RabbitMQServer).url.replace(/^amqp:/, 'rabbit:') } }),
  crash: (bus: Bus) => (bus.transport('default') as RabbitDriver).crash(),
  // mandatory publishes make "no queue for this topic" a quick MessageUndeliverable
  noServerTimeout: 2_000,
});
