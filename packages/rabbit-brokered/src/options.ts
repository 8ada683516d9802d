/**
 * Transport URL → driver options. The query string takes oslo.messaging's option names with
 * oslo's defaults, so a `transport_url` plus the `[oslo_messaging_rabbit]` knobs of an existing
 * deployment carry over as is. Anything unknown or malformed is a ConfigError that names the
 * option, the bad value and the expected form: a typo must not silently fall back to a default.
 */
import fs from 'node:fs';
import path from 'node:path';
import { ConfigError, maskUrl } from '@hybridbus/core';
import { urlDecode, urlHosts, type UrlHost } from '@hybridbus/core/driver';
import type { Options, SocketOptions } from 'amqplib';

/** One broker to try; the failover list is tried in order, round-robin. */
export interface BrokerAddress {
  readonly connect: Options.Connect;
  readonly socket: SocketOptions;
  /** For logs: scheme://host:port/vhost, no credentials. */
  readonly label: string;
}

export interface RabbitOptions {
  /** The URL's scheme ("rabbit", "amqp", "amqps"), for diagnostics events. */
  readonly scheme?: string | undefined;
  /** amqp_durable_queues: control exchange, topic/server/notification/pool queues durable. */
  readonly durableQueues: boolean;
  /** amqp_auto_delete: the same entities auto-delete. */
  readonly autoDelete: boolean;
  /** rabbit_quorum_queue: topic/server/notification/pool queues are quorum queues (durable). */
  readonly quorumQueues: boolean;
  /** rabbit_transient_queues_ttl, s: x-expires of reply and fanout queues. */
  readonly transientQueuesTtlS: number;
  /** rabbit_qos_prefetch_count: basic.qos per consumer channel; 0 = none. */
  readonly prefetch: number;
  /** heartbeat_timeout_threshold, s: the AMQP heartbeat we ask for; 0 = off. */
  readonly heartbeatS: number;
  /** kombu_missing_consumer_retry_timeout, s: how long a returned reply is retried. */
  readonly missingConsumerRetryTimeoutS: number;
  /** rabbit_retry_interval / rabbit_retry_backoff / rabbit_interval_max, s: reconnect backoff. */
  readonly retryIntervalS: number;
  readonly retryBackoffS: number;
  readonly intervalMaxS: number;
  /** confirm_window: publishes awaiting a broker confirm at once; more wait (backpressure). */
  readonly confirmWindow: number;
  /** connect_timeout, s: TCP + AMQP handshake bound per attempt. */
  readonly connectTimeoutS: number;
  /**
   * notification_default_queue (ours, default true as oslo does): the notifier declares and
   * binds the queue `<topic>.<priority>` before publishing, so notifications wait there for a
   * listener that does not exist yet. With pool listeners (their own queue) that queue is
   * never consumed and doubles the broker's work per notification; false publishes only
   * (mandatory: a notification no queue is bound for fails with MessageUndeliverable).
   */
  readonly notificationDefaultQueue: boolean;
  readonly brokers: readonly BrokerAddress[];
}

type Parser<T> = (raw: string) => T | undefined;

const TRUE = /^(1|true|yes|on)$/i;
const FALSE = /^(0|false|no|off)$/i;
const bool: Parser<boolean> = (raw) => (TRUE.test(raw) ? true : FALSE.test(raw) ? false : undefined);
const intAtLeast =
  (min: number): Parser<number> =>
  (raw) =>
    /^\d+$/.test(raw) && Number(raw) >= min ? Number(raw) : undefined;
const secondsAtLeast =
  (min: number): Parser<number> =>
  (raw) =>
    /^\d+(\.\d+)?$/.test(raw) && Number(raw) >= min ? Number(raw) : undefined;
const str: Parser<string> = (raw) => (raw === '' ? undefined : raw);

interface Spec {
  readonly parse: Parser<unknown>;
  readonly expected: string;
}

/** Every option we accept; the defaults below are oslo's (plus ours for the extras). */
const SPECS: Readonly<Record<string, Spec>> = {
  amqp_durable_queues: { parse: bool, expected: 'a boolean (true/false, 1/0, yes/no, on/off)' },
  amqp_auto_delete: { parse: bool, expected: 'a boolean (true/false, 1/0, yes/no, on/off)' },
  rabbit_quorum_queue: { parse: bool, expected: 'a boolean (true/false, 1/0, yes/no, on/off)' },
  rabbit_transient_queues_ttl: { parse: intAtLeast(1), expected: 'a whole number of seconds >= 1' },
  rabbit_qos_prefetch_count: { parse: intAtLeast(0), expected: 'a whole number >= 0 (0: no limit)' },
  heartbeat_timeout_threshold: { parse: intAtLeast(0), expected: 'a whole number of seconds >= 0 (0: no heartbeats)' },
  kombu_missing_consumer_retry_timeout: { parse: intAtLeast(0), expected: 'a whole number of seconds >= 0' },
  rabbit_retry_interval: { parse: secondsAtLeast(0.01), expected: 'a number of seconds >= 0.01' },
  rabbit_retry_backoff: { parse: secondsAtLeast(0), expected: 'a number of seconds >= 0' },
  rabbit_interval_max: { parse: secondsAtLeast(0.01), expected: 'a number of seconds >= 0.01' },
  confirm_window: { parse: intAtLeast(1), expected: 'a whole number >= 1' },
  connect_timeout: { parse: secondsAtLeast(0.1), expected: 'a number of seconds >= 0.1' },
  notification_default_queue: { parse: bool, expected: 'a boolean (true/false, 1/0, yes/no, on/off)' },
  failover: { parse: str, expected: 'comma-separated broker URLs, e.g. "amqp://h2:5672/,amqp://h3:5672/"' },
  ssl: { parse: bool, expected: 'a boolean (true/false, 1/0, yes/no, on/off)' },
  ssl_ca_file: { parse: str, expected: 'the path of a PEM file' },
  ssl_cert_file: { parse: str, expected: 'the path of a PEM file' },
  ssl_key_file: { parse: str, expected: 'the path of a PEM file' },
};

/** The option names this driver accepts in the URL query (for docs and error messages). */
export const OPTION_NAMES: readonly string[] = Object.keys(SPECS);

/** The URL as it may be shown: core's one masking rule (user:*** in every host of a failover list too). */
function redact(url: URL): string {
  return maskUrl(url.href);
}

export function parseRabbitUrl(url: URL): RabbitOptions {
  const scheme = url.protocol.replace(/:$/, '');
  const source = `transport ${redact(url)}`;
  const problems: string[] = [];
  const values = new Map<string, unknown>();
  for (const [key, raw] of url.searchParams) {
    // Own keys only: "?constructor=1" must be an unknown option, not Object's.
    const spec = Object.hasOwn(SPECS, key) ? SPECS[key] : undefined;
    if (!spec) {
      problems.push(`unknown option "${key}" (=${JSON.stringify(raw)}); expected one of: ${OPTION_NAMES.join(', ')}`);
      continue;
    }
    if (values.has(key)) {
      problems.push(`option "${key}" is given more than once`);
      continue;
    }
    const v = spec.parse(raw);
    if (v === undefined) problems.push(`option "${key}" has bad value ${JSON.stringify(raw)}; expected ${spec.expected}`);
    else values.set(key, v);
  }
  const get = <T>(key: string, dflt: T): T => (values.has(key) ? (values.get(key) as T) : dflt);

  const quorumQueues = get('rabbit_quorum_queue', false);
  const autoDelete = get('amqp_auto_delete', false);
  if (quorumQueues && autoDelete) {
    problems.push('options "rabbit_quorum_queue" and "amqp_auto_delete" exclude each other (quorum queues cannot auto-delete)');
  }

  const tls = scheme === 'amqps' || get('ssl', false);
  const tlsFiles: Record<string, Buffer> = {};
  for (const key of ['ssl_ca_file', 'ssl_cert_file', 'ssl_key_file']) {
    const file = values.get(key) as string | undefined;
    if (file === undefined) continue;
    if (!tls) {
      problems.push(`option "${key}" needs TLS: add ssl=true`);
      continue;
    }
    try {
      tlsFiles[key] = fs.readFileSync(path.resolve(file));
    } catch (e) {
      problems.push(`option "${key}" names ${JSON.stringify(file)}, which cannot be read (${(e as Error).message}); expected the path of a readable PEM file`);
    }
  }
  if ((tlsFiles['ssl_cert_file'] === undefined) !== (tlsFiles['ssl_key_file'] === undefined) && problems.length === 0) {
    problems.push('options "ssl_cert_file" and "ssl_key_file" go together (a client certificate needs its key)');
  }

  let vhost = '/';
  if (url.pathname !== '' && url.pathname !== '/') vhost = urlDecode(url.pathname.slice(1));

  const hosts: UrlHost[] = [];
  const main = urlHosts(url);
  if (typeof main === 'string') problems.push(`bad broker list in the URL: ${main}`);
  else hosts.push(...main);
  const failover = values.get('failover') as string | undefined;
  if (failover !== undefined) {
    for (const item of failover.split(',').map((s) => s.trim()).filter((s) => s !== '')) {
      let f: URL;
      try {
        f = new URL(item);
      } catch {
        problems.push(`option "failover" has bad URL ${JSON.stringify(item)}; expected ${SPECS['failover']?.expected}`);
        continue;
      }
      const entries = urlHosts(f);
      if (typeof entries === 'string') problems.push(`option "failover": ${entries}`);
      else hosts.push(...entries);
    }
  }
  if (problems.length > 0) throw new ConfigError(problems, source);

  // Hosts without credentials use the first ones given (oslo does the same for its list).
  const firstWithUser = hosts.find((h) => h.username !== undefined);
  const protocol = tls ? 'amqps' : 'amqp';
  const heartbeatS = get('heartbeat_timeout_threshold', 60);
  const brokers: BrokerAddress[] = hosts.map((h) => {
    const port = h.port ?? (tls ? 5671 : 5672);
    const socket: SocketOptions = { noDelay: true };
    if (tlsFiles['ssl_ca_file']) socket.ca = [tlsFiles['ssl_ca_file']];
    if (tlsFiles['ssl_cert_file']) socket.cert = tlsFiles['ssl_cert_file'];
    if (tlsFiles['ssl_key_file']) socket.key = tlsFiles['ssl_key_file'];
    return {
      connect: {
        protocol,
        hostname: h.host,
        port,
        username: h.username ?? firstWithUser?.username ?? 'guest',
        password: h.password ?? (h.username === undefined ? firstWithUser?.password : undefined) ?? 'guest',
        vhost,
        heartbeat: heartbeatS,
      },
      socket,
      label: `${protocol}://${h.host.includes(':') ? `[${h.host}]` : h.host}:${port}/${vhost === '/' ? '' : encodeURIComponent(vhost)}`,
    };
  });

  return {
    scheme,
    durableQueues: get('amqp_durable_queues', false),
    autoDelete,
    quorumQueues,
    transientQueuesTtlS: get('rabbit_transient_queues_ttl', 1800),
    prefetch: get('rabbit_qos_prefetch_count', 0),
    heartbeatS,
    missingConsumerRetryTimeoutS: get('kombu_missing_consumer_retry_timeout', 60),
    retryIntervalS: get('rabbit_retry_interval', 1),
    retryBackoffS: get('rabbit_retry_backoff', 2),
    intervalMaxS: get('rabbit_interval_max', 30),
    confirmWindow: get('confirm_window', 1000),
    connectTimeoutS: get('connect_timeout', 10),
    notificationDefaultQueue: get('notification_default_queue', true),
    brokers,
  };
}
