/**
 * The AMQP 1.0 contenders: the amqp1 driver (amqp://) through each intermediary this machine
 * has, each beside raw rhea doing the same work through the same intermediary
 * (child-raw-rhea.ts), so a ratio never compares a broker hop with none:
 *
 *   amqp1-direct / raw-rhea-direct   no intermediary: servers listen (the driver finds them through
 *                                    a private local name service; raw rhea is given the endpoints)
 *   amqp1-proton / raw-rhea-proton   the Qpid Proton C++ example broker (--proton-url)
 *   amqp1-rabbit / raw-rhea-rabbit   RabbitMQ's AMQP 1.0 plugin, on the --rabbit-url broker's port
 *   amqp1-router / raw-rhea-router   a qdrouterd (--router-url)
 *
 * A queue broker (Proton's) has no multicast: fanout is not run there (`unsupported` says so).
 * Through an intermediary the driver has no notification pools, so its notify listener has none.
 * Importing this module registers all eight.
 */
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { SCENARIOS, type Contender, type Scenario } from './contender.js';
import { redactUrl, registerContender, type RegisteredOptions } from './contenders.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const node = (script: string): { command: string; args: string[] } => ({ command: process.execPath, args: [path.join(here, script)] });

export type Amqp1Via = 'direct' | 'proton' | 'rabbit' | 'router';
type Kind = 'direct' | 'broker' | 'rabbitmq' | 'router';
const KIND: Readonly<Record<Amqp1Via, Kind>> = { direct: 'direct', proton: 'broker', rabbit: 'rabbitmq', router: 'router' };
const LABEL: Readonly<Record<Amqp1Via, string>> = {
  direct: 'no intermediary',
  proton: 'Proton C++ broker',
  rabbit: 'RabbitMQ AMQP 1.0 plugin',
  router: 'qdrouterd',
};

const NO_MULTICAST = 'a queue broker has no multicast: the driver refuses fanout there (UnsupportedFeature), and raw rhea could reach one server only';

/**
 * Can `host:port` speak AMQP 1.0? Sends the SASL protocol header and reads the answer: a
 * RabbitMQ without its plugin answers with the 0-9-1 header.
 */
export function amqp10Probe(what: string, host: string, port: number, timeoutMs = 3_000): Promise<string | undefined> {
  return new Promise((resolve) => {
    const s = net.connect({ host, port });
    let got = Buffer.alloc(0);
    const done = (why: string | undefined): void => {
      s.destroy();
      resolve(why);
    };
    s.setTimeout(timeoutMs, () => done(`${what}: no AMQP 1.0 answer from ${host}:${port} in ${timeoutMs} ms`));
    s.once('connect', () => s.write(Buffer.from([0x41, 0x4d, 0x51, 0x50, 3, 1, 0, 0])));
    s.on('data', (b: Buffer) => {
      got = Buffer.concat([got, b]);
      if (got.length < 8) return;
      const ok = got.subarray(0, 4).toString('latin1') === 'AMQP' && got[5] === 1 && got[6] === 0;
      done(ok ? undefined : `${what}: ${host}:${port} does not speak AMQP 1.0 (it answered the header with ${[...got.subarray(4, 8)].join('.')}${what.includes('rabbit') ? '; enable rabbitmq_amqp1_0' : ''})`);
    });
    s.once('error', (e: NodeJS.ErrnoException) => done(`${what}: ${e.code ?? e.message} ${host}:${port}`));
  });
}

/** amqp:// on the RabbitMQ the bench uses (its AMQP 1.0 plugin listens on the 0-9-1 port). */
export function rabbitAmqp1Url(rabbitUrl: string): string {
  const u = new URL(rabbitUrl);
  const cred = u.username ? `${u.username}${u.password ? `:${u.password}` : ''}@` : '';
  return `amqp://${cred}${(u.host.split(',')[0] ?? '')}/`;
}

/** The intermediary's URL for `via`, or why there is none. */
function urlOf(via: Amqp1Via, o: RegisteredOptions): string | { missing: string } {
  if (via === 'direct') return `amqp://?mode=direct&matchmaker=local:${o.nsDir}`;
  if (via === 'rabbit') return o.rabbitUrl ? rabbitAmqp1Url(o.rabbitUrl) : { missing: 'no RabbitMQ URL configured (--rabbit-url)' };
  if (via === 'proton') return o.protonUrl ?? { missing: 'no Proton broker configured (--proton-url or HYBRIDBUS_BENCH_PROTON_URL; `npm run bench:all` starts one)' };
  return o.routerUrl ?? { missing: 'no qdrouterd configured (--router-url or HYBRIDBUS_BENCH_ROUTER_URL; `npm run bench:all` starts one when QDROUTERD_BIN names a qdrouterd)' };
}

function probeOf(id: string, url: string | { missing: string }): () => Promise<string | undefined> {
  return async () => {
    if (typeof url !== 'string') return `${id}: ${url.missing}`;
    const u = new URL(url);
    if (u.host === '') return undefined;
    return amqp10Probe(id, u.hostname || '127.0.0.1', Number(u.port) || 5672);
  };
}

const scenariosOf = (via: Amqp1Via): readonly Scenario[] => (via === 'proton' ? SCENARIOS.filter((s) => s !== 'fanout') : SCENARIOS);
const unsupportedOf = (via: Amqp1Via): Partial<Record<Scenario, string>> => (via === 'proton' ? { fanout: NO_MULTICAST } : {});

for (const via of ['direct', 'proton', 'rabbit', 'router'] as const) {
  const raw = `raw-rhea-${via}`;
  registerContender(`amqp1-${via}`, (o): Contender => {
    const url = urlOf(via, o);
    const id = `amqp1-${via}`;
    return {
      info: { id, label: `hybridbus amqp1, ${LABEL[via]}`, kind: 'hybridbus', ...(typeof url === 'string' ? { url: redactUrl(url) } : {}) },
      scenarios: scenariosOf(via),
      unsupported: unsupportedOf(via),
      data: typeof url === 'string' ? { config: { transports: { default: url }, log: { level: 'error' } }, notifyPool: via === 'direct' } : {},
      probe: probeOf(id, url),
      server: () => node('child-hybridbus.js'),
      client: () => node('child-hybridbus.js'),
      baseline: () => raw,
    };
  });
  registerContender(raw, (o): Contender => {
    const url = urlOf(via, o);
    let data: Record<string, unknown> = { kind: KIND[via] };
    if (typeof url === 'string' && via !== 'direct') {
      const u = new URL(url);
      data = {
        ...data,
        host: u.hostname || '127.0.0.1',
        port: Number(u.port) || 5672,
        ...(u.username ? { username: decodeURIComponent(u.username), password: decodeURIComponent(u.password) } : {}),
      };
    }
    return {
      info: { id: raw, label: `raw rhea, ${LABEL[via]}`, kind: 'raw', ...(typeof url === 'string' && via !== 'direct' ? { url: redactUrl(url) } : {}) },
      scenarios: scenariosOf(via),
      unsupported: unsupportedOf(via),
      data,
      probe: probeOf(raw, url),
      server: () => node('child-raw-rhea.js'),
      client: () => node('child-raw-rhea.js'),
      baseline: () => undefined,
    };
  });
}
