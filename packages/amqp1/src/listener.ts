/**
 * Direct mode's server side: no intermediary, so this process is what clients attach to. One
 * listener per driver (rhea `container.listen`) takes the links clients open: a sender of
 * theirs to a request or notification address becomes a receiver here, routed to the
 * subscription that owns the address (unknown addresses are refused with amqp:not-found, so
 * the client moves on to another server); a receiver of theirs with a dynamic source is given
 * an address here, and replies to that address go back on it. Announcing a `product` makes
 * oslo's Python clients in `dynamic` mode use routable addresses; subscriptions register
 * both forms, so a client configured either way finds them.
 */
import type { Server } from 'node:net';
import { randomBytes } from 'node:crypto';
import type { Logger } from '@hybridbus/core';
import type { HostRecord } from '@hybridbus/nameservice';
import rhea from 'rhea';
import type { Connection, Container, EventContext, Message, Receiver, Sender } from 'rhea';
import { consume, type Inbound, type Outcome } from './inbound.js';
import type { Amqp1Options } from './options.js';

export const PRODUCT = 'hybridbus';

/**
 * The application property naming the notification pool a copy is for. Listeners of several
 * pools of one topic in one process share its addresses: without it a copy meant for one pool
 * could reach another's listener, one pool getting it twice and the other never.
 */
export const POOL_PROPERTY = 'x-hybridbus-pool';

/** The pool a message says it is for (POOL_PROPERTY), or undefined (a sender that names none, e.g. oslo's). */
export function poolOf(message: Message): string | undefined {
  const pool: unknown = (message.application_properties as Record<string, unknown> | undefined)?.[POOL_PROPERTY];
  return typeof pool === 'string' ? pool : undefined;
}

export interface Route {
  readonly window: number;
  /** Every subscription of the address gets each message (fanout), instead of one in turn. */
  readonly each?: boolean;
  /** A notification listener's pool ("" for none): copies naming a pool go to its listeners only. */
  readonly pool?: string;
  onMessage(msg: Inbound): void;
}

/** The subscriptions of one address in this process (several servers of a topic may share one listener). */
class RouteSet {
  readonly routes: Route[] = [];
  /** Turns per pool named (undefined: none named): one counter over pools' alternating copies starved listeners. */
  private readonly turns = new Map<string | undefined, number>();

  deliver(m: Inbound): void {
    const pool = poolOf(m.message);
    const ofPool = (r: Route): boolean => (r.pool ?? '') === pool;
    const routes = pool !== undefined && !this.routes.every(ofPool) ? this.routes.filter(ofPool) : this.routes;
    // A copy for a pool with no listener here (a stale record): refused, and the notifier's send
    // fails with MessageUndeliverable rather than reach another pool.
    if (routes.length === 0) return m.settle({ kind: 'undeliverable' });
    if (routes.length === 1) return (routes[0] as Route).onMessage(m);
    if (!routes[0]?.each) {
      const turn = this.turns.get(pool) ?? 0;
      this.turns.set(pool, turn + 1);
      return (routes[turn % routes.length] as Route).onMessage(m);
    }
    // One delivery, several handlers: settled once all have, accepted if any took it.
    let left = routes.length;
    let outcome: Outcome | undefined;
    for (const r of [...routes]) {
      r.onMessage({
        ...m,
        settle(o) {
          if (outcome === undefined || o.kind === 'accept') outcome = o;
          if (--left === 0) m.settle(outcome);
        },
      });
    }
  }
}

export class DirectListener {
  private readonly routes = new Map<string, RouteSet>();
  private readonly links = new Map<string, Set<Receiver>>();
  private readonly replyLinks = new Map<string, Sender>();
  private readonly connections = new Set<Connection>();
  /** TLS clients not in allowed_clients: told so at their open, and given no link. */
  private readonly refused = new WeakSet<object>();
  private readonly prefix = `${randomBytes(6).toString('hex')}.reply.`;
  private replyCount = 0;
  /** Replies whose client had gone (its reply link closed). */
  repliesDropped = 0;

  private constructor(
    private readonly container: Container,
    private readonly server: Server,
    readonly record: HostRecord,
    private readonly logger: Logger,
  ) {}

  static async start(options: Amqp1Options, logger: Logger, containerId: string): Promise<DirectListener> {
    const container = rhea.create_container({ id: containerId });
    if (options.username !== undefined) {
      // Clients must present the deployment's credentials: no ANONYMOUS, no SASL-less connections.
      const [user, pass] = [options.username, options.password ?? ''];
      container.sasl_server_mechanisms.enable_plain((u: string, p: string) => u === user && p === pass);
    }
    const tls = options.tls;
    const listenOptions = {
      host: options.bindHost,
      port: options.port,
      container_id: containerId,
      properties: { product: PRODUCT },
      idle_time_out: options.idleTimeoutMs || undefined,
      require_sasl: options.username !== undefined,
      receiver_options: { credit_window: 0, autoaccept: false },
      // Replies and heartbeats go out pre-settled (oslo's default for rpc-reply): no disposition back per reply.
      sender_options: { snd_settle_mode: 1, autosettle: true },
      // A reply is one small write: Nagle's delay against the client's delayed ACK cost 40 ms at p99.
      tcp_no_delay: true,
      ...(tls
        ? {
            transport: 'tls' as const,
            key: tls.key,
            cert: tls.cert,
            passphrase: tls.passphrase,
            ca: tls.ca,
            requestCert: options.allowedClients !== undefined,
            rejectUnauthorized: options.allowedClients !== undefined,
          }
        : {}),
    };
    const server = container.listen(listenOptions as never) as unknown as Server;
    await new Promise<void>((resolve, reject) => {
      server.once('listening', resolve);
      server.once('error', reject);
    });
    const port = (server.address() as { port: number }).port;
    const listener = new DirectListener(container, server, { address: `${options.advertiseHost}:${port}` }, logger);
    listener.wire(options);
    return listener;
  }

  private wire(options: Amqp1Options): void {
    const allowed = options.allowedClients;
    const c = this.container;
    c.on('connection_open', (ctx: EventContext) => {
      const conn = ctx.connection;
      // TLS already checked the certificate against the CA; its subject must also be listed. The
      // client is told at its open (amqp:unauthorized-access), so it fails instead of retrying elsewhere.
      const cn = allowed ? conn.get_peer_certificate()?.subject?.CN : undefined;
      if (allowed && (typeof cn !== 'string' || !allowed.has(cn))) {
        this.logger.warn({}, `amqp1 direct listener ${this.record.address}: refused a client whose certificate names ${JSON.stringify(cn ?? null)} (not in allowed_clients)`);
        this.refused.add(conn);
        conn.close({ condition: 'amqp:unauthorized-access', description: 'the client certificate is not in allowed_clients' });
        return;
      }
      this.connections.add(conn);
    });
    const gone = (ctx: EventContext): void => {
      this.connections.delete(ctx.connection);
      for (const [addr, s] of this.replyLinks) if (s.connection === ctx.connection) this.replyLinks.delete(addr);
    };
    c.on('disconnected', gone);
    c.on('connection_close', gone);
    c.on('connection_error', () => undefined);
    c.on('protocol_error', () => undefined);
    c.on('error', (e: Error) => this.logger.warn({}, `amqp1 direct listener ${this.record.address}: ${e.message}`));
    c.on('receiver_open', (ctx: EventContext) => this.onClientSender(ctx.receiver as Receiver));
    c.on('sender_open', (ctx: EventContext) => this.onClientReceiver(ctx.sender as Sender));
    c.on('sender_close', (ctx: EventContext) => {
      const addr = ctx.sender?.source?.address;
      if (addr && this.replyLinks.get(addr) === ctx.sender) this.replyLinks.delete(addr);
    });
    c.on('receiver_close', (ctx: EventContext) => {
      const addr = ctx.receiver?.target?.address;
      if (addr) this.links.get(addr)?.delete(ctx.receiver as Receiver);
    });
    for (const ev of ['sender_error', 'receiver_error', 'session_error', 'settled']) c.on(ev, () => undefined);
  }

  /** A client's sender to an address of ours: the subscription owning it consumes. */
  private onClientSender(receiver: Receiver): void {
    const address = receiver.target?.address;
    const set = address !== undefined && !this.refused.has(receiver.connection) ? this.routes.get(address) : undefined;
    const first = set?.routes[0];
    if (!address || !set || !first) {
      receiver.close({ condition: 'amqp:not-found', description: `nothing listens on ${JSON.stringify(address ?? null)} at ${this.record.address}` });
      return;
    }
    let links = this.links.get(address);
    if (!links) this.links.set(address, (links = new Set()));
    links.add(receiver);
    consume(receiver, first.window, (m) => set.deliver(m));
  }

  /** A client's receiver: a dynamic source becomes its reply address here. */
  private onClientReceiver(sender: Sender): void {
    if (!sender.source?.dynamic || this.refused.has(sender.connection)) {
      sender.close({ condition: 'amqp:not-found', description: `only dynamic reply sources can be attached at ${this.record.address}` });
      return;
    }
    const address = `${this.prefix}${this.replyCount++}`;
    sender.set_source({ address, dynamic: true });
    this.replyLinks.set(address, sender);
  }

  /** Route these addresses to `route` until the returned function is called. */
  addRoute(addresses: readonly string[], route: Route): () => void {
    for (const a of addresses) {
      let set = this.routes.get(a);
      if (!set) this.routes.set(a, (set = new RouteSet()));
      set.routes.push(route);
    }
    return () => {
      for (const a of addresses) {
        const set = this.routes.get(a);
        const i = set?.routes.indexOf(route) ?? -1;
        if (!set || i < 0) continue;
        set.routes.splice(i, 1);
        if (set.routes.length > 0) continue;
        this.routes.delete(a);
        for (const r of this.links.get(a) ?? []) r.close({ condition: 'amqp:not-found', description: `the server stopped listening on ${a}` });
        this.links.delete(a);
      }
    };
  }

  /** Send a reply on the reply link `to` names; false when its client is gone. */
  reply(to: string, message: Message): boolean {
    const s = this.replyLinks.get(to);
    if (!s || !s.is_open()) {
      this.repliesDropped++;
      return false;
    }
    // Replies are not held back for credit: the client granted reply_link_credit and takes them as they come.
    s.send(message);
    return true;
  }

  async close(): Promise<void> {
    for (const conn of this.connections) conn.close();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
