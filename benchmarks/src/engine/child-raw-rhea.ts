/**
 * The raw rhea baseline's child: what a careful rhea user writes by hand for the work the amqp1
 * driver does, through the same intermediary (or none), without envelopes, JSON, outcome
 * bookkeeping, timers or a name service.
 * - calls: an unsettled request carrying the same JSON body (an AMQP string) as the driver's
 *   oslo request, to the address the driver would use; the server consumes it (credit window,
 *   auto-accept) and replies pre-settled to the client's reply address: a dynamic source, or
 *   /topic/reply.<tag> on RabbitMQ (its plugin has no dynamic sources), as the driver does;
 *   replies are matched by correlation-id = the request's message-id;
 * - cast, notify: unsettled sends, done on `accepted`, at most SEND_WINDOW unsettled;
 * - fanout: RabbitMQ: /topic/<broadcast address> with one receiver per server; a router: its
 *   multicast address; direct: one connection per server, the message sent on each.
 * Each server has its own connection (or, directly, its own listener), as each hybridbus server
 * has its own Bus. No TCP Nagle (tcp_no_delay), as the driver.
 *
 * spec.data: { kind: 'direct' | 'broker' | 'rabbitmq' | 'router', host?, port?, username?, password? }.
 */
import { randomBytes } from 'node:crypto';
import rhea from 'rhea';
import type { Connection, ConnectionOptions, EventContext, Message, Receiver, Sender } from 'rhea';
import { Payloads, readSpec, runClient, runServer, SEND_WINDOW, type ClientSide } from './child.js';
import type { ClientSpec, ServerSpec } from './contender.js';

/** Server credit, as the driver's rpc_server_credit / notify_server_credit defaults. */
const SERVER_CREDIT = 100;
/** Reply receiver credit, as the driver's reply_link_credit default. */
const REPLY_CREDIT = 200;

type Kind = 'direct' | 'broker' | 'rabbitmq' | 'router';

const spec = readSpec<ServerSpec | ClientSpec>();
const data = spec.data as { kind: Kind; host?: string; port?: number; username?: string; password?: string };
const kind = data.kind;
const isCall = spec.scenario === 'latency' || spec.scenario === 'throughput';

/**
 * The addresses the driver uses for this spec's topic (addressing.ts): legacy names for a broker
 * or RabbitMQ, routable ones for a router (and directly, any name does: we pick the legacy one).
 */
function address(): string {
  const exchange = 'openstack';
  const t = spec.topic;
  const routable = kind === 'router';
  if (isCall || spec.scenario === 'cast') return routable ? `openstack.org/om/rpc/anycast/${exchange}/${t}` : `unicast.${exchange}.${t}`;
  if (spec.scenario === 'notify') return routable ? `openstack.org/om/notify/anycast/${exchange}/${t}.info` : `unicast.${exchange}.${t}.info`;
  const fan = routable ? `openstack.org/om/rpc/multicast/${exchange}/${t}` : `broadcast.${exchange}.${t}.all`;
  return kind === 'rabbitmq' ? `/topic/${fan}` : fan;
}

/**
 * The driver's oslo body for the same message, built once per payload size: the raw client
 * sends these bytes without serialising anything per message.
 */
function bodies(sizes: readonly number[]): string[] {
  return sizes.map((n) => {
    const p = 'x'.repeat(n);
    if (spec.scenario === 'notify') {
      const inner = JSON.stringify({ message_id: '00000000-0000-0000-0000-000000000000', publisher_id: `bench.${process.pid}`, event_type: 'bench.event', priority: 'INFO', payload: { p }, timestamp: '2026-01-01 00:00:00.000000' });
      return JSON.stringify({ request: { 'oslo.version': '2.0', 'oslo.message': inner }, context: {} });
    }
    return JSON.stringify({ request: { method: isCall ? 'echo' : 'sink', args: { p } }, context: {} });
  });
}

function connectTo(host: string, port: number): Connection {
  const container = rhea.create_container({ id: `raw-rhea-${process.pid}-${randomBytes(4).toString('hex')}` });
  const o: Record<string, unknown> = { host, port, tcp_no_delay: true, reconnect: false };
  if (data.username !== undefined) {
    o['username'] = data.username;
    o['password'] = data.password ?? '';
  }
  return container.connect(o as unknown as ConnectionOptions);
}

const opened = (c: Connection): Promise<void> =>
  new Promise((resolve, reject) => {
    c.once('connection_open', () => resolve());
    c.once('disconnected', (ctx: EventContext) => reject(ctx.error ?? new Error('disconnected')));
    c.once('connection_error', (ctx: EventContext) => reject(new Error(JSON.stringify(ctx.connection.error ?? "connection error"))));
  });

const attached = (l: Receiver | Sender): Promise<void> =>
  new Promise((resolve, reject) => {
    if (l.is_open()) return resolve();
    l.once(l.is_receiver() ? 'receiver_open' : 'sender_open', () => resolve());
    l.once(l.is_receiver() ? 'receiver_error' : 'sender_error', (ctx: EventContext) => reject(new Error(`attach refused: ${JSON.stringify((ctx.receiver ?? ctx.sender)?.error ?? null)}`)));
  });

/** A sender whose sends wait for credit in order (the only backpressure a careful user needs). */
class CreditQueue {
  private readonly waiting: Message[] = [];
  constructor(readonly link: Sender) {
    link.on('sendable', () => this.flush());
  }
  send(m: Message): void {
    if (this.waiting.length === 0 && this.link.sendable()) this.link.send(m);
    else this.waiting.push(m);
  }
  private flush(): void {
    while (this.waiting.length > 0 && this.link.sendable()) this.link.send(this.waiting.shift() as Message);
  }
}

if (spec.role === 'server') {
  await runServer(async (s, arrivals) => {
    const closers: Array<() => void> = [];
    const endpoints: string[] = [];
    /** Echo a request: the body back, pre-settled, to its reply address on `conn`. */
    const replier = (conn: Connection): ((m: Message) => void) => {
      const senders = new Map<string, CreditQueue>();
      return (m) => {
        const to = m.reply_to as string;
        let q = senders.get(to);
        if (!q) senders.set(to, (q = new CreditQueue(conn.open_sender({ target: { address: to }, snd_settle_mode: 1 } as never))));
        q.send({ to, correlation_id: m.message_id, body: m.body });
      };
    };
    for (let i = 0; i < s.servers.length; i++) {
      if (kind === 'direct') {
        // Our own listener: clients attach senders to any address, and dynamic reply receivers.
        const container = rhea.create_container({ id: `raw-rhea-server-${process.pid}-${i}` });
        const replyLinks = new Map<string, Sender>();
        let n = 0;
        const server = container.listen({ host: '127.0.0.1', port: 0, sender_options: { snd_settle_mode: 1 }, receiver_options: { credit_window: SERVER_CREDIT, autoaccept: true } } as never) as unknown as import('node:net').Server;
        await new Promise<void>((resolve, reject) => {
          server.once('listening', resolve);
          server.once('error', reject);
        });
        endpoints.push(`127.0.0.1:${(server.address() as { port: number }).port}`);
        container.on('connection_open', (ctx: EventContext) => (ctx.connection as unknown as { socket?: { setNoDelay(b: boolean): void } }).socket?.setNoDelay(true));
        container.on('sender_open', (ctx: EventContext) => {
          const snd = ctx.sender as Sender;
          if (!snd.source?.dynamic) return;
          const addr = `reply.${n++}`;
          snd.set_source({ address: addr, dynamic: true });
          replyLinks.set(addr, snd);
        });
        container.on('message', (ctx: EventContext) => {
          const m = ctx.message as Message;
          if (isCall) replyLinks.get(m.reply_to as string)?.send({ correlation_id: m.message_id, body: m.body });
          else arrivals.hit();
        });
        closers.push(() => server.close());
        continue;
      }
      const conn = connectTo(data.host as string, data.port as number);
      await opened(conn);
      closers.push(() => conn.close());
      const addr = address();
      const r = conn.open_receiver({ source: { address: addr }, target: { address: addr }, credit_window: SERVER_CREDIT, autoaccept: true });
      await attached(r);
      if (isCall) {
        const reply = replier(conn);
        r.on('message', (ctx: EventContext) => reply(ctx.message as Message));
      } else {
        r.on('message', () => arrivals.hit());
      }
    }
    return { endpoints, close: () => closers.forEach((c) => c()) };
  });
} else {
  await runClient(async (c): Promise<ClientSide> => {
    const payloads = new Payloads(c.payload.sizes);
    const texts = bodies(c.payload.sizes);
    let bi = 0;
    const nextBody = (): string => {
      payloads.nextText();
      const b = texts[bi] as string;
      bi = (bi + 1) % texts.length;
      return b;
    };
    const hosts: Array<[string, number]> =
      kind === 'direct'
        ? (spec.scenario === 'fanout' ? c.endpoints : c.endpoints.slice(0, 1)).map((e) => {
            const i = e.lastIndexOf(':');
            return [e.slice(0, i), Number(e.slice(i + 1))];
          })
        : [[data.host as string, data.port as number]];
    const conns = hosts.map(([h, p]) => connectTo(h, p));
    await Promise.all(conns.map(opened));
    const conn = conns[0] as Connection;
    const close = (): void => conns.forEach((x) => x.close());
    const addr = address();
    let seq = 0;
    const idPrefix = randomBytes(8).toString('hex');

    if (isCall) {
      const source = kind === 'rabbitmq' ? { address: `/topic/reply.${randomBytes(16).toString('hex')}` } : { address: undefined as unknown as string, dynamic: true };
      const replies = conn.open_receiver({ source, target: { address: 'rpc-response' }, credit_window: REPLY_CREDIT, autoaccept: true });
      await attached(replies);
      const replyTo = kind === 'rabbitmq' ? source.address : (replies.source?.address as string);
      const waiting = new Map<string, () => void>();
      replies.on('message', (ctx: EventContext) => {
        const id = ctx.message?.correlation_id as string;
        const done = waiting.get(id);
        waiting.delete(id);
        done?.();
      });
      const q = new CreditQueue(conn.open_sender({ target: { address: addr }, source: { address: addr }, snd_settle_mode: 0, autosettle: true } as never));
      return {
        call: () =>
          new Promise<void>((resolve) => {
            const message_id = `${idPrefix}.${(seq++).toString(36)}`;
            waiting.set(message_id, resolve);
            q.send({ message_id, to: addr, reply_to: replyTo, body: nextBody() });
          }),
        sendMany: () => Promise.reject(new Error('no one-way messages in call scenarios')),
        close,
      };
    }

    // One-way: unsettled sends on one sender per connection, done on `accepted`.
    const links = conns.map((x) => x.open_sender({ target: { address: addr }, source: { address: addr }, snd_settle_mode: 0, autosettle: true } as never));
    await Promise.all(links.map(attached));
    let unsettled = 0;
    let failure: Error | undefined;
    let wake: (() => void) | undefined;
    const poke = (): void => {
      const w = wake;
      wake = undefined;
      w?.();
    };
    for (const l of links) {
      l.on('accepted', () => {
        unsettled--;
        poke();
      });
      for (const ev of ['released', 'rejected', 'modified']) {
        l.on(ev, () => {
          failure ??= new Error(`a message was ${ev}`);
          unsettled--;
          poke();
        });
      }
      l.on('sendable', poke);
    }
    const waitForWake = (): Promise<void> => new Promise<void>((r) => (wake = r));
    return {
      sendMany: async (more) => {
        let sent = 0;
        while (more()) {
          while (unsettled + links.length > SEND_WINDOW * links.length || !links.every((l) => l.sendable())) await waitForWake();
          if (failure) throw failure;
          const body = nextBody();
          for (const l of links) {
            unsettled++;
            l.send({ message_id: `${idPrefix}.${(seq++).toString(36)}`, to: addr, body });
          }
          sent++;
        }
        while (unsettled > 0) await waitForWake();
        if (failure) throw failure;
        return sent;
      },
      close,
    };
  });
}
