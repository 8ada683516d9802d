/**
 * The shared conformance suite on amqp:// (the AMQP 1.0 driver) in each of its carriers:
 * direct (peer to peer, a private local name service), a Qpid Proton C++ broker, RabbitMQ's
 * AMQP 1.0 plugin, and a qdrouterd when there is one. Cases are skipped only by the
 * capabilities each kind declares (AMQP1_CAPABILITIES). Each bus is a "process" with its own
 * connections; crash() destroys their sockets (and a direct listener's) as a killed process would.
 */
import { describe } from 'node:test';
import { type Bus } from '@hybridbus/core';
import { conformance } from './conformance/suite.js';
import { CrashableAmqp1Driver, registerCrashableAmqp1 } from './amqp1/crashable.js';
import { qdrouterdAvailable, startProtonBroker, startQdrouterd, startRabbitMQ, type RunningServer } from './harness/launcher.js';
import { tempDir } from './util.js';

registerCrashableAmqp1();

const crash = (bus: Bus): Promise<void> => (bus.transport('default') as CrashableAmqp1Driver).crash();

const dir = tempDir('hb-amqp1-ns-');
conformance({
  name: 'amqp:// direct (local name service)',
  config: () => ({ transports: { default: `amqp://?mode=direct&matchmaker=local:${dir}&ns_cache=0` } }),
  crash,
  noServerTimeout: 2_000,
});

/** A backend behind one intermediary the suite starts and stops. */
function through(name: string, start: () => Promise<RunningServer>, query: string, extra: { noServer?: 'timeout'; noServerTimeout?: number } = {}): void {
  let server: RunningServer | undefined;
  conformance({
    name,
    setup: async () => {
      server = await start();
    },
    teardown: async () => server?.stop(),
    config: () => ({ transports: { default: `${(server as RunningServer).url.replace(/\/?$/, '/')}?${query}` } }),
    crash,
    ...extra,
  });
}

// A queue broker makes a queue for any address: nobody serving a topic cannot be told from a slow server.
through('amqp:// Proton C++ broker', () => startProtonBroker({ flavour: 'cpp' }), 'connection_retry_interval=0.1', { noServer: 'timeout', noServerTimeout: 1_000 });
// RabbitMQ's plugin publishes without `mandatory`: a message no queue takes is dropped, yet `accepted`.
through('amqp:// RabbitMQ (AMQP 1.0 plugin)', () => startRabbitMQ(), 'connection_retry_interval=0.1', { noServer: 'timeout', noServerTimeout: 1_000 });

const router = qdrouterdAvailable();
if ('bin' in router) {
  // A router gives no credit to an address nobody consumes: sends fail after default_send_timeout.
  through('amqp:// qdrouterd', () => startQdrouterd(), 'connection_retry_interval=0.1&default_send_timeout=1&default_notify_timeout=1', { noServerTimeout: 2_000 });
} else {
  describe('conformance: amqp:// qdrouterd', { skip: router.reason }, () => undefined);
}
