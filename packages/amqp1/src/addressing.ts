/**
 * oslo's amqp1 addresses (docs/wire.md, "amqp1"): legacy names for queue brokers,
 * routable names for router networks, and `dynamic`, which picks by the peer's `product`
 * exactly as oslo does, except that RabbitMQ gets legacy names (its AMQP 1.0 plugin rejects
 * '/' in a bare address, so routable names could never work there).
 *
 *   legacy    server  exclusive[.vhost].<exchange>.<topic>.<server>
 *             group   unicast[.vhost].<exchange>.<topic>
 *             fanout  broadcast[.vhost].<exchange>.<topic>.all
 *             notify  unicast[.vhost].<exchange>.<topic>.<priority>
 *   routable  openstack.org/om/{rpc,notify}/{unicast,anycast,multicast}[/vhost]/<exchange>/<topic>[/<server>]
 */
import type { Target } from '@hybridbus/core';
import type { Priority } from '@hybridbus/core/driver';
import type { Amqp1Options } from './options.js';

export interface Addresser {
  readonly kind: 'legacy' | 'routable';
  /** Requests for one server of the topic. */
  server(target: Target): string;
  /** Requests for any server of the topic (competing consumers). */
  group(target: Target): string;
  /** Requests for every server of the topic. */
  fanout(target: Target): string;
  /** Notifications of the topic at one priority (competing consumers). */
  notify(target: Target, priority: Priority): string;
  /** The request address a target resolves to, as oslo's resolve(). */
  request(target: Target): string;
}

/** Which naming the peer gets: oslo's rule for `dynamic` (product absent or qpid-cpp → legacy). */
export function addressingFor(options: Amqp1Options, product: unknown): 'legacy' | 'routable' {
  if (options.addressingMode !== 'dynamic') return options.addressingMode;
  if (product === undefined || product === null || product === 'qpid-cpp' || product === 'RabbitMQ') return 'legacy';
  return 'routable';
}

export function makeAddresser(kind: 'legacy' | 'routable', options: Amqp1Options, controlExchange: string): Addresser {
  const px = options.prefixes;
  const vhost = options.vhost;
  // oslo fills an unset target exchange from default_{rpc,notification}_exchange; core has
  // already put the control exchange there, so that is what the defaults replace.
  const rpcExchange = (t: Target): string => (t.exchange === undefined || t.exchange === controlExchange ? (options.defaultRpcExchange ?? controlExchange) : t.exchange);
  const notifyExchange = (t: Target): string =>
    t.exchange === undefined || t.exchange === controlExchange ? (options.defaultNotificationExchange ?? controlExchange) : t.exchange;
  const join = (sep: string, parts: ReadonlyArray<string | undefined>): string => parts.filter((s) => s !== undefined && s !== '').join(sep);

  const a: Omit<Addresser, 'request'> =
    kind === 'legacy'
      ? {
          kind,
          server: (t) => join('.', [px.server, vhost, rpcExchange(t), t.topic, t.server]),
          group: (t) => join('.', [px.group, vhost, rpcExchange(t), t.topic]),
          fanout: (t) => join('.', [px.broadcast, vhost, rpcExchange(t), t.topic, 'all']),
          notify: (t, priority) => join('.', [px.group, vhost, notifyExchange(t), `${t.topic}.${priority}`]),
        }
      : {
          kind,
          server: (t) => join('/', [`${px.rpc}/${px.unicast}`, vhost, rpcExchange(t), t.topic, t.server]),
          group: (t) => join('/', [`${px.rpc}/${px.anycast}`, vhost, rpcExchange(t), t.topic]),
          fanout: (t) => join('/', [`${px.rpc}/${px.multicast}`, vhost, rpcExchange(t), t.topic]),
          notify: (t, priority) => join('/', [`${px.notify}/${px.anycast}`, vhost, notifyExchange(t), `${t.topic}.${priority}`]),
        };
  return { ...a, request: (t) => (t.fanout ? a.fanout(t) : t.server !== undefined ? a.server(t) : a.group(t)) };
}
