/**
 * A test double of the amqp1 driver that can die like a killed process: every socket it holds
 * (its connections out, and in direct mode its listener's connections in) is destroyed without
 * an AMQP close, so peers see the TCP connection drop and nothing more (no detach, no reply).
 */
import type { Server, Socket } from 'node:net';
import { Amqp1Driver } from '@hybridbus/amqp1';
import type { Connection } from 'rhea';

/** rhea keeps a connection's socket as `socket` (connection.js, init()). */
const socketOf = (c: Connection): Socket | undefined => (c as unknown as { socket?: Socket }).socket;

/** What the listener holds privately (listener.ts): the connections it accepted, its server. */
interface ListenerInternals {
  readonly connections: ReadonlySet<Connection>;
  readonly server: Server;
}

export class CrashableAmqp1Driver extends Amqp1Driver {
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
