/**
 * amqp:// (and amqps://) options: oslo.messaging's `[oslo_messaging_amqp]` option names and
 * defaults in the URL's query string, so an oslo `transport_url` plus its amqp1 knobs carry over
 * as they are, and a few of ours (`mode`, the direct mode's name service and listener). Every
 * bad option is a ConfigError naming the option, the value and the expected form.
 *
 *   amqp://user:pass@broker:5672/                     through a broker or a router (detected)
 *   amqp://h1:5672,h2:5672/?mode=router               failover list, router semantics declared
 *   amqp://?mode=direct&matchmaker=redis://ns:6379     no intermediary: servers listen, register
 *   amqp://?mode=direct&username=u&password=p          ... and they (and their clients) use SASL PLAIN
 *
 * A URL with no host can hold no user:pass, so direct mode's credentials are oslo's
 * `username`/`password` options (which an intermediary's URL may use instead of its userinfo).
 */
import fs from 'node:fs';
import path from 'node:path';
import { optionParsers as p, urlHosts, UrlOptions, type OptionSpec } from '@hybridbus/core/driver';

/**
 * What carries the messages. `auto` decides at the first connection from the peer's announced
 * `product`: qpid-dispatch-router → router, RabbitMQ → rabbitmq, anything else → broker.
 */
export type Amqp1Mode = 'auto' | 'broker' | 'router' | 'rabbitmq' | 'direct';
export type AddressingMode = 'dynamic' | 'legacy' | 'routable';
export type SettleKind = 'rpc-call' | 'rpc-reply' | 'rpc-cast' | 'notify';

export interface Amqp1Host {
  readonly host: string;
  readonly port: number;
}

export interface TlsFiles {
  readonly ca?: Buffer | undefined;
  readonly cert?: Buffer | undefined;
  readonly key?: Buffer | undefined;
  readonly passphrase?: string | undefined;
  /** ssl_verify_vhost: check the server's certificate against the vhost instead of the host. */
  readonly servername?: string | undefined;
}

export interface Amqp1Options {
  /** The URL's scheme ("amqp", "amqps"), for diagnostics events. */
  readonly scheme?: string | undefined;
  readonly mode: Amqp1Mode;
  /** Intermediaries, tried in turn (oslo's failover list); empty in direct mode. */
  readonly hosts: readonly Amqp1Host[];
  readonly username: string | undefined;
  readonly password: string | undefined;
  /** SASL mechanisms offered (oslo's sasl_mechanisms); default PLAIN and ANONYMOUS with credentials. */
  readonly saslMechanisms: readonly string[];
  readonly tls: TlsFiles | undefined;
  /** The URL's path: oslo's pseudo vhost, inserted into legacy addresses when pseudo_vhost is on. */
  readonly vhost: string | undefined;
  readonly addressingMode: AddressingMode;
  readonly prefixes: {
    readonly server: string;
    readonly broadcast: string;
    readonly group: string;
    readonly rpc: string;
    readonly notify: string;
    readonly multicast: string;
    readonly unicast: string;
    readonly anycast: string;
  };
  readonly defaultNotificationExchange: string | undefined;
  readonly defaultRpcExchange: string | undefined;
  /** Which sends go pre-settled (fire and forget); the rest wait for the peer's outcome. */
  readonly preSettled: ReadonlySet<SettleKind>;
  readonly replyLinkCredit: number;
  readonly rpcServerCredit: number;
  readonly notifyServerCredit: number;
  /** ms: a send that got no credit or outcome in this long fails (casts/fanouts, notifications). */
  readonly sendTimeoutMs: number;
  readonly notifyTimeoutMs: number;
  /** ms: a reply that could not be sent in this long is dropped (logged). */
  readonly replyTimeoutMs: number;
  /** ms: reconnect backoff: first delay, and the most it grows to. */
  readonly retryIntervalMs: number;
  readonly retryIntervalMaxMs: number;
  /** ms: AMQP idle time-out we announce (0: none): a silent peer is dropped after twice this. */
  readonly idleTimeoutMs: number;
  readonly containerName: string | undefined;
  /** Direct mode: where servers' listeners bind, what they register, which name service. */
  readonly matchmaker: string;
  readonly bindHost: string;
  readonly advertiseHost: string;
  readonly port: number;
  readonly nsTtlMs: number;
  readonly nsCacheMs: number;
  /** Direct mode with TLS: the client certificates' subject CNs a listener accepts (undefined: any the CA signed). */
  readonly allowedClients: ReadonlySet<string> | undefined;
  /** Message ids a receiver remembers to drop duplicates of resent messages. */
  readonly dedupMax: number;
}

const seconds = (min: number): OptionSpec<number> => p.secondsAtLeast(min);

const SPECS = {
  mode: p.oneOf<Amqp1Mode>('auto', 'broker', 'router', 'rabbitmq', 'direct'),
  addressing_mode: p.oneOf<AddressingMode>('dynamic', 'legacy', 'routable'),
  server_request_prefix: p.text,
  broadcast_prefix: p.text,
  group_request_prefix: p.text,
  rpc_address_prefix: p.text,
  notify_address_prefix: p.text,
  multicast_address: p.text,
  unicast_address: p.text,
  anycast_address: p.text,
  default_notification_exchange: p.text,
  default_rpc_exchange: p.text,
  pseudo_vhost: p.bool,
  pre_settled: {
    parse: (raw: string) => {
      const kinds = raw.split(/[\s,]+/).filter((s) => s !== '');
      const ok = ['rpc-call', 'rpc-reply', 'rpc-cast', 'notify'];
      return kinds.every((k) => ok.includes(k)) ? (kinds as SettleKind[]) : undefined;
    },
    expected: 'a comma-separated list of rpc-call, rpc-reply, rpc-cast, notify (or empty)',
  } as OptionSpec<SettleKind[]>,
  reply_link_credit: p.intAtLeast(1),
  rpc_server_credit: p.intAtLeast(1),
  notify_server_credit: p.intAtLeast(1),
  default_send_timeout: seconds(0.01),
  default_notify_timeout: seconds(0.01),
  default_reply_timeout: seconds(0.01),
  connection_retry_interval: seconds(0.01),
  connection_retry_backoff: seconds(0),
  connection_retry_interval_max: seconds(0.01),
  idle_timeout: p.intAtLeast(0, 'a whole number of seconds >= 0 (0: none)'),
  container_name: p.text,
  ssl: p.bool,
  ssl_ca_file: p.text,
  ssl_cert_file: p.text,
  ssl_key_file: p.text,
  ssl_key_password: { ...p.text, secret: true } as OptionSpec<string>,
  ssl_verify_vhost: p.bool,
  username: p.text,
  password: { ...p.text, secret: true } as OptionSpec<string>,
  sasl_mechanisms: {
    parse: (raw: string) => {
      const m = raw.split(/[\s,]+/).filter((s) => s !== '').map((s) => s.toUpperCase());
      return m.length > 0 && m.every((s) => s === 'PLAIN' || s === 'ANONYMOUS' || s === 'EXTERNAL') ? m : undefined;
    },
    expected: 'a space- or comma-separated list of PLAIN, ANONYMOUS, EXTERNAL',
  } as OptionSpec<string[]>,
  matchmaker: p.text,
  bind_host: p.text,
  advertise_host: p.text,
  port: p.intAtLeast(0, 'a port number 0-65535 (0: any free port)'),
  ns_ttl: p.intAtLeast(100, 'a whole number of ms >= 100'),
  ns_cache: p.intAtLeast(0, 'a whole number of ms >= 0'),
  allowed_clients: p.list,
  dedup_max: p.intAtLeast(1),
} satisfies Record<string, OptionSpec<unknown>>;

/** The option names amqp:// accepts (for docs and error messages). */
export const OPTION_NAMES: readonly string[] = Object.keys(SPECS);

function readPem(o: UrlOptions<typeof SPECS>, key: 'ssl_ca_file' | 'ssl_cert_file' | 'ssl_key_file'): Buffer | undefined {
  const file = o.values[key];
  if (file === undefined) return undefined;
  try {
    return fs.readFileSync(path.resolve(file));
  } catch (e) {
    o.problems.push(`option "${key}" names ${JSON.stringify(file)}, which cannot be read (${(e as NodeJS.ErrnoException).code ?? 'error'}); expected the path of a readable PEM file`);
    return undefined;
  }
}

export function parseAmqp1Url(url: URL): Amqp1Options {
  const o = new UrlOptions(url, SPECS);
  const scheme = url.protocol.replace(/:$/, '');
  const mode = o.get('mode', url.host === '' ? 'direct' : 'auto');

  const hosts: Amqp1Host[] = [];
  let username: string | undefined;
  let password: string | undefined;
  const tlsWanted = scheme === 'amqps' || o.get('ssl', false);
  if (url.host !== '') {
    const entries = urlHosts(url);
    if (typeof entries === 'string') o.problems.push(`bad host list in the URL: ${entries}`);
    else {
      for (const e of entries) hosts.push({ host: e.host, port: e.port ?? (tlsWanted ? 5671 : 5672) });
      const withUser = entries.find((e) => e.username !== undefined);
      username = withUser?.username;
      password = withUser?.password;
    }
  }
  if (o.values.username !== undefined || o.values.password !== undefined) {
    if (username !== undefined) o.problems.push('options "username"/"password" and a user:pass@ in the URL both give credentials: keep one');
    else if (o.values.username === undefined) o.problems.push('option "password" needs "username"');
    else [username, password] = [o.values.username, o.values.password];
  }
  if (mode === 'direct') {
    if (hosts.length > 0) {
      o.problems.push(
        `mode "direct" takes no host in the URL (servers are found through "matchmaker"); write amqp://?mode=direct&matchmaker=...${url.username ? '&username=...&password=...' : ''}`,
      );
    }
  } else if (hosts.length === 0) {
    o.problems.push(`mode "${mode}" needs a host, e.g. amqp://broker:5672/ (or mode=direct for no intermediary)`);
  } else {
    for (const key of ['matchmaker', 'bind_host', 'advertise_host', 'port', 'allowed_clients'] as const) {
      if (o.values[key] !== undefined) o.problems.push(`option "${key}" applies only to mode=direct`);
    }
  }

  let tls: TlsFiles | undefined;
  const ca = readPem(o, 'ssl_ca_file');
  const cert = readPem(o, 'ssl_cert_file');
  const key = readPem(o, 'ssl_key_file');
  if (tlsWanted) {
    if ((cert === undefined) !== (key === undefined) && o.problems.length === 0) {
      o.problems.push('options "ssl_cert_file" and "ssl_key_file" go together (a certificate needs its key)');
    }
    const vhost = url.pathname.length > 1 ? decodeURIComponent(url.pathname.slice(1)) : undefined;
    tls = { ca, cert, key, passphrase: o.values.ssl_key_password, servername: o.get('ssl_verify_vhost', false) ? vhost : undefined };
  } else {
    for (const k of ['ssl_ca_file', 'ssl_cert_file', 'ssl_key_file', 'ssl_key_password', 'ssl_verify_vhost', 'allowed_clients'] as const) {
      if (o.values[k] !== undefined) o.problems.push(`option "${k}" needs TLS: use an amqps:// URL or ssl=true`);
    }
  }
  if (mode === 'direct' && tls && o.values.allowed_clients && (!tls.ca || !tls.cert)) {
    o.problems.push('option "allowed_clients" needs "ssl_ca_file" (to verify client certificates) and "ssl_cert_file"/"ssl_key_file" (the listener\'s own)');
  }
  if (mode === 'direct' && tls && (!tls.cert || !tls.key)) {
    o.problems.push('mode=direct with TLS needs "ssl_cert_file" and "ssl_key_file": every server listens with its certificate');
  }
  o.check();

  const saslDefault = username !== undefined ? ['PLAIN', 'ANONYMOUS'] : ['ANONYMOUS'];
  const bindHost = o.get('bind_host', '127.0.0.1');
  const pseudoVhost = o.get('pseudo_vhost', true);
  const vhostPath = url.pathname.length > 1 ? decodeURIComponent(url.pathname.slice(1)) : undefined;
  return {
    mode,
    hosts,
    username,
    password,
    saslMechanisms: o.get('sasl_mechanisms', saslDefault),
    tls,
    vhost: pseudoVhost ? vhostPath : undefined,
    addressingMode: o.get('addressing_mode', 'dynamic'),
    prefixes: {
      server: o.get('server_request_prefix', 'exclusive'),
      broadcast: o.get('broadcast_prefix', 'broadcast'),
      group: o.get('group_request_prefix', 'unicast'),
      rpc: o.get('rpc_address_prefix', 'openstack.org/om/rpc'),
      notify: o.get('notify_address_prefix', 'openstack.org/om/notify'),
      multicast: o.get('multicast_address', 'multicast'),
      unicast: o.get('unicast_address', 'unicast'),
      anycast: o.get('anycast_address', 'anycast'),
    },
    defaultNotificationExchange: o.values.default_notification_exchange,
    defaultRpcExchange: o.values.default_rpc_exchange,
    // oslo pre-settles casts too; ours wait for the outcome unless told otherwise (acked casts).
    preSettled: new Set(o.get('pre_settled', ['rpc-reply'])),
    replyLinkCredit: o.get('reply_link_credit', 200),
    rpcServerCredit: o.get('rpc_server_credit', 100),
    notifyServerCredit: o.get('notify_server_credit', 100),
    sendTimeoutMs: o.get('default_send_timeout', 30) * 1000,
    notifyTimeoutMs: o.get('default_notify_timeout', 30) * 1000,
    replyTimeoutMs: o.get('default_reply_timeout', 30) * 1000,
    retryIntervalMs: o.get('connection_retry_interval', 1) * 1000,
    retryIntervalMaxMs: o.get('connection_retry_interval_max', 30) * 1000,
    idleTimeoutMs: o.get('idle_timeout', 0) * 1000,
    containerName: o.values.container_name,
    matchmaker: o.get('matchmaker', 'local'),
    bindHost,
    advertiseHost: o.get('advertise_host', bindHost === '0.0.0.0' || bindHost === '::' ? '127.0.0.1' : bindHost),
    port: o.get('port', 0),
    nsTtlMs: o.get('ns_ttl', 30_000),
    scheme,
    nsCacheMs: o.get('ns_cache', 5_000),
    allowedClients: o.values.allowed_clients ? new Set(o.values.allowed_clients) : undefined,
    dedupMax: o.get('dedup_max', 100_000),
  };
}
