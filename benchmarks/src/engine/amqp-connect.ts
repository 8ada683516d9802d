/** amqplib's connect options for the bench's RabbitMQ URL (shared by the raw amqplib children). */
import type { Options } from 'amqplib';

/** amqplib's connect options for a rabbit:// URL (oslo's empty vhost is '/'). */
export function connectOptions(url: string): Options.Connect {
  const u = new URL(url);
  const tls = u.protocol === 'amqps:';
  const host = (u.host.split(',')[0] ?? '').split(':');
  const vhost = decodeURIComponent(u.pathname.replace(/^\//, ''));
  return {
    protocol: tls ? 'amqps' : 'amqp',
    hostname: host[0] || '127.0.0.1',
    port: Number(host[1]) || (tls ? 5671 : 5672),
    username: decodeURIComponent(u.username) || 'guest',
    password: decodeURIComponent(u.password) || 'guest',
    vhost: vhost || '/',
  };
}
