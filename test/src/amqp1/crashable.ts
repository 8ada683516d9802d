/**
 * A test double of the amqp1 driver that can die like a killed process: every socket it holds
 * (its connections out, and in direct mode its listener's connections in) is destroyed without
 * an AMQP close, so peers see the TCP connection drop and nothing more (no detach, no reply).
 */
import type { Server, Socket } from 'node:net';
import { registerDriver } from '@hybridbus/core/driver';
import { Amqp1Driver, amqp1DriverFactory, parseAmqp1Url } from '@hybridbus/amqp1';
import type { Connection } from 'rhea';

/** rhea keeps a connection's socket as `socket` (connection.js, init()). */
const socketOf = (c: Connection): Socket | undefined => (c as unknown as { socket?: Socket }).socket;

/** What the listener holds privately (listener.ts): the connections it accepted, its server. */
interface ListenerInternals {
  readonly connections: ReadonlySet<Connection>;
  readonly server: Server;
}

export class CrashableAmqp1Driver extends Amqp1Driver {
  /** Direct mode: host:port of this driver's listener (once a server or listener started it). */
  async listenerAddress(): Promise<string> {
    const l = await this.listenerStarting;
    if (!l) throw new Error('no listener: nothing listens in this driver yet');
    return l.record.address;
  }

  /**
   * Resolves as soon as the sockets are destroyed, before any peer can have noticed: a caller
   * awaiting this has its handlers in place before the peer's failures arrive.
   */
  async crash(): Promise<void> {
    const c = this.carrier as object;
    const peers = 'peers' in c ? [...(c.peers as Map<string, { connection: Connection }>).values()] : [(c as { peer: { connection: Connection } }).peer];
    for (const p of peers) socketOf(p.connection)?.destroy();
    const listener = (await this.listenerStarting?.catch(() => undefined)) as unknown as ListenerInternals | undefined;
    if (listener) {
      listener.server.close();
      for (const conn of listener.connections) socketOf(conn)?.destroy();
    }
    // Stops reconnects and timers; the sockets are gone already, so nothing reaches a peer.
    void this.close().catch(() => undefined);
  }
}

/** amqp:, amqps: and amqp1: make CrashableAmqp1Driver from here on (in this process). */
export function registerCrashableAmqp1(): void {
  registerDriver({
    schemes: amqp1DriverFactory.schemes,
    async create(url, context) {
      const driver = new CrashableAmqp1Driver(parseAmqp1Url(url), context);
      await driver.started();
      return driver;
    },
  });
}
