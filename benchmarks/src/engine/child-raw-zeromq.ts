/**
 * The raw zeromq.js baseline's child: what a zeromq.js user writes by hand, without
 * serialisation, envelopes or discovery.
 * - calls: DEALER → ROUTER echo (a DEALER connected to every server round-robins);
 * - cast, notify: PUSH → PULL (round-robin over servers, like a pool);
 * - fanout: one PUSH per server, the message sent to each in turn (there is no broker to copy it).
 * With spec.data.acks (the raw-zeromq-acked contender), one-way messages are acked instead, as
 * zmq:// acks them by default: DEALER → ROUTER, [sequence number, body]; the ROUTER counts the
 * message and sends its sequence number back; the client keeps SEND_WINDOW unacked (a fanout
 * waits for every server's ack) and counts a message sent once acked.
 */
import * as zmq from 'zeromq';
import { Payloads, readSpec, runClient, runServer, windowed, type ClientSide } from './child.js';
import type { ClientSpec, ServerSpec } from './contender.js';

const ENDPOINT = 'tcp://127.0.0.1:*';
const spec0 = readSpec<ServerSpec | ClientSpec>();
const role = spec0.role;
const acked = spec0.data['acks'] === true;

/**
 * One DEALER's acked sends: zeromq.js allows one send at a time per socket, so sends are chained;
 * an ack (the sequence number back) settles its message.
 */
class AckedDealer {
  readonly socket = new zmq.Dealer({ linger: 0 });
  private readonly waiting = new Map<number, () => void>();
  private seq = 0;
  private chain: Promise<void> = Promise.resolve();

  constructor(endpoints: readonly string[]) {
    for (const ep of endpoints) this.socket.connect(ep);
    void (async () => {
      for await (const [n] of this.socket) {
        const id = (n as Buffer).readUInt32LE(0);
        this.waiting.get(id)?.();
        this.waiting.delete(id);
      }
    })().catch(() => undefined);
  }

  send(body: Buffer): Promise<void> {
    const n = Buffer.allocUnsafe(4);
    const id = this.seq++ >>> 0;
    n.writeUInt32LE(id, 0);
    const acked = new Promise<void>((resolve) => this.waiting.set(id, resolve));
    this.chain = this.chain.then(() => this.socket.send([n, body]));
    return acked;
  }
}

if (role === 'server') {
  await runServer(async (spec, arrivals) => {
    const sockets: Array<zmq.Router | zmq.Pull> = [];
    const endpoints: string[] = [];
    for (let i = 0; i < spec.servers.length; i++) {
      if (acked) {
        const router = new zmq.Router({ linger: 0 });
        await router.bind(ENDPOINT);
        void (async () => {
          for await (const [id, n] of router) {
            arrivals.hit();
            await router.send([id as Buffer, n as Buffer]);
          }
        })().catch(() => undefined);
        sockets.push(router);
        endpoints.push(router.lastEndpoint as string);
      } else if (spec.scenario === 'latency' || spec.scenario === 'throughput') {
        const router = new zmq.Router({ linger: 0 });
        await router.bind(ENDPOINT);
        void (async () => {
          for await (const [id, body] of router) await router.send([id as Buffer, body as Buffer]);
        })().catch(() => undefined);
        sockets.push(router);
        endpoints.push(router.lastEndpoint as string);
      } else {
        const pull = new zmq.Pull({ linger: 0 });
        await pull.bind(ENDPOINT);
        void (async () => {
          for await (const _ of pull) arrivals.hit();
        })().catch(() => undefined);
        sockets.push(pull);
        endpoints.push(pull.lastEndpoint as string);
      }
    }
    return { endpoints, close: () => sockets.forEach((s) => s.close()) };
  });
} else {
  await runClient(async (spec): Promise<ClientSide> => {
    const payloads = new Payloads(spec.payload.sizes);
    if (spec.scenario === 'latency' || spec.scenario === 'throughput') {
      const dealer = new zmq.Dealer({ linger: 0 });
      for (const ep of spec.endpoints) dealer.connect(ep);
      let outstanding = 0;
      let done = 0;
      let wake: (() => void) | undefined;
      // Throughput: one receive loop counting replies (latency's call() receives by itself).
      if (spec.scenario === 'throughput') {
        void (async () => {
          for await (const _ of dealer) {
            outstanding--;
            done++;
            wake?.();
          }
        })().catch(() => undefined);
      }
      return {
        call: async () => {
          await dealer.send(payloads.nextBuffer());
          await dealer.receive();
        },
        // One DEALER and a send loop keeping `inflight` requests outstanding.
        pipeline: async (inflight, stop) => {
          done = 0;
          while (!stop()) {
            if (outstanding >= inflight) {
              await new Promise<void>((r) => (wake = r));
              continue;
            }
            outstanding++;
            await dealer.send(payloads.nextBuffer());
          }
          // The replies still in flight, so that the next command starts clean.
          while (outstanding > 0) await new Promise<void>((r) => (wake = r));
          return done;
        },
        sendMany: () => Promise.reject(new Error('no one-way messages in call scenarios')),
        close: () => dealer.close(),
      };
    }
    if (acked) {
      // A DEALER round-robins over every server (casts, a pool's notifications); a fanout has one per server.
      const dealers = spec.scenario === 'fanout' ? spec.endpoints.map((ep) => new AckedDealer([ep])) : [new AckedDealer(spec.endpoints)];
      const one = (): Promise<unknown> => {
        const body = payloads.nextBuffer();
        return dealers.length === 1 ? (dealers[0] as AckedDealer).send(body) : Promise.all(dealers.map((d) => d.send(body)));
      };
      return {
        sendMany: windowed(one),
        close: () => dealers.forEach((d) => d.socket.close()),
      };
    }
    const pushes = spec.scenario === 'fanout' ? spec.endpoints.map(() => new zmq.Push({ linger: 0 })) : [new zmq.Push({ linger: 0 })];
    if (spec.scenario === 'fanout') spec.endpoints.forEach((ep, i) => pushes[i]?.connect(ep));
    else for (const ep of spec.endpoints) pushes[0]?.connect(ep);
    return {
      // One send at a time per zeromq.js socket (a second concurrent send() throws "busy").
      sendMany: async (more) => {
        let sent = 0;
        while (more()) {
          const body = payloads.nextBuffer();
          for (const push of pushes) await push.send(body);
          sent++;
        }
        return sent;
      },
      close: () => pushes.forEach((p) => p.close()),
    };
  });
}
