/**
 * The shared conformance suite on rabbit:// against a real RabbitMQ from the launcher. Each bus
 * is a "process" with its own connection; crash() destroys that connection's socket so the
 * broker sees the process vanish (no more replies or heartbeats, no reconnect).
 */
import { type Bus } from '@hybridbus/core';
import { registerDriver } from '@hybridbus/core/driver';
import { RabbitDriver, parseRabbitUrl, rabbitDriverFactory } from '@hybridbus/rabbit-brokered'; // registers rabbit:, amqp:, amqps:
import { socketOf } from '@hybridbus/rabbit-brokered/amqplib-internals';
import { conformance } from './conformance/suite.js';
import { startRabbitMQ, type RabbitMQServer } from './harness/launcher.js';

/** A test double: the driver, plus a way to die like a killed process (production has none). */
class CrashableRabbitDriver extends RabbitDriver {
  /** The socket goes without connection.close; closing at once stops reconnects and sends. */
  crash(): Promise<void> {
    const gen = this.link.current;
    // With an error, so amqplib tears its side down too (heartbeat timers included).
    if (gen) socketOf(gen.model)?.destroy(new Error('simulated crash'));
    return this.close();
  }
}
registerDriver({
  schemes: rabbitDriverFactory.schemes,
  async create(url, context) {
    const driver = new CrashableRabbitDriver(parseRabbitUrl(url), context);
    await driver.started();
    return driver;
  },
});

let rabbit: RabbitMQServer | undefined;
conformance({
  name: 'rabbit://',
  setup: async () => {
    rabbit = await startRabbitMQ({ plugins: [] });
  },
  teardown: async () => rabbit?.stop(),
  config: () => ({ transports: { default: (rabbit as RabbitMQServer).url.replace(/^amqp:/, 'rabbit:') } }),
  crash: (bus: Bus) => (bus.transport('default') as CrashableRabbitDriver).crash(),
  // mandatory publishes make "no queue for this topic" a quick MessageUndeliverable
  noServerTimeout: 2_000,
});
