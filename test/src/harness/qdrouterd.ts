/**
 * A throw-away Qpid Dispatch Router for tests (launcher.ts): `qdrouterd -c <dataDir>/qdrouterd.conf`,
 * a standalone router with one listener on a free 127.0.0.1 port (no authentication, SASL
 * ANONYMOUS), ready once the port answers the AMQP 1.0 protocol header.
 *
 * Debian does not package qdrouterd; it runs when one is built by hand: QDROUTERD_BIN, else
 * `qdrouterd` on PATH (or in /usr/local/sbin, /usr/sbin). Such a build needs its Python modules
 * (the `qpid_dispatch` package) on PYTHONPATH: the router gets QDROUTERD_PYTHONPATH, then the
 * site-/dist-packages below the binary's install prefix that hold `qpid_dispatch` (a plain
 * `make install` puts them there), then the caller's PYTHONPATH. qdrouterdAvailable() says whether
 * there is one, and if not, why (tests skip with that reason).
 *
 * Building one on Debian bookworm (qpid-dispatch 1.19.0, the last release, against Debian's
 * Proton 0.37): Debian ships no ProtonConfig.cmake, so give CMake a small one (Proton_VERSION
 * 0.37.0, Proton_{Core,Proactor}_LIBRARIES = libqpid-proton.so, *_INCLUDE_DIRS = /usr/include) via
 * -DProton_DIR, with -DPython_EXECUTABLE=/usr/bin/python3 -DUSE_LIBWEBSOCKETS=OFF
 * -DBUILD_TESTING=OFF -DCONSOLE_INSTALL=OFF -DCMAKE_INSTALL_PREFIX=<prefix>; `make install` then
 * puts qdrouterd in <prefix>/sbin and `qpid_dispatch` in an egg below <prefix>/local/lib/python3.11.
 *
 * The router distributes oslo.messaging's AMQP 1.0 addresses as a router network does
 * (OSLO_ADDRESSES): multicast for fanout, closest for a named server, balanced for a topic.
 */
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';

import { freePort, LOOPBACK } from './ports.js';
import { isExecutableFile, ManagedServer, startWithRetry, type LaunchSpec, type RunningServer, type StartOptions } from './managed-server.js';
import { nextServerNumber } from './process.js';
import { amqp10Spec } from './proton-broker.js';

export type QdrouterdDistribution = 'multicast' | 'closest' | 'balanced';

/**
 * The `address` entries every test router gets: oslo.messaging's routable addresses
 * (<prefix>/{multicast,unicast,anycast}/...) and its legacy ones (broadcast., unicast., exclusive.).
 */
export const OSLO_ADDRESSES: readonly (readonly [prefix: string, distribution: QdrouterdDistribution])[] = [
  ['openstack.org/om/rpc/multicast', 'multicast'],
  ['openstack.org/om/rpc/unicast', 'closest'],
  ['openstack.org/om/rpc/anycast', 'balanced'],
  ['openstack.org/om/notify/multicast', 'multicast'],
  ['openstack.org/om/notify/unicast', 'closest'],
  ['openstack.org/om/notify/anycast', 'balanced'],
  ['broadcast', 'multicast'],
  ['unicast', 'closest'],
  ['exclusive', 'closest'],
];

export interface QdrouterdServer extends RunningServer {
  readonly kind: 'qdrouterd';
  /** The router's id (router { id: ... }). */
  readonly routerId: string;
  /** The generated qdrouterd.conf in the data dir. */
  readonly configFile: string;
}

export interface QdrouterdOptions extends StartOptions {
  /** Router id (default hb<pid>x<n>). */
  routerId?: string;
  /** Further `address` entries (prefix → distribution), after OSLO_ADDRESSES. */
  addresses?: Record<string, QdrouterdDistribution>;
  /** Further qdrouterd.conf sections, appended verbatim. */
  config?: string;
}

/**
 * Where a qdrouterd is: QDROUTERD_BIN (which must then be an executable), else `qdrouterd` on
 * PATH, in /usr/local/sbin or /usr/sbin; otherwise why there is none (a reason to skip a test with).
 */
export function qdrouterdAvailable(): { bin: string } | { reason: string } {
  const configured = process.env['QDROUTERD_BIN'];
  if (configured) {
    return isExecutableFile(configured) ? { bin: configured } : { reason: `QDROUTERD_BIN=${configured} is not an executable file` };
  }
  const dirs = [...(process.env['PATH'] ?? '').split(path.delimiter).filter(Boolean), '/usr/local/sbin', '/usr/sbin'];
  const bin = dirs.map((d) => path.join(d, 'qdrouterd')).find(isExecutableFile);
  return bin
    ? { bin }
    : { reason: 'no qdrouterd (Qpid Dispatch Router; Debian does not package it): build one and put it on PATH or set QDROUTERD_BIN' };
}

/** Directories below the install prefix of `bin` (<prefix>/sbin/qdrouterd) that hold the qpid_dispatch package. */
function installedPythonPath(bin: string): string[] {
  const prefix = path.dirname(path.dirname(fs.realpathSync(bin)));
  const found: string[] = [];
  for (const lib of ['lib', 'lib64', 'local/lib']) {
    const libDir = path.join(prefix, lib);
    const pythons = fs.existsSync(libDir) ? fs.readdirSync(libDir).filter((d) => /^python3/.test(d)) : [];
    for (const py of pythons) {
      for (const pkgs of ['site-packages', 'dist-packages']) {
        const dir = path.join(libDir, py, pkgs);
        if (!fs.existsSync(dir)) continue;
        if (fs.existsSync(path.join(dir, 'qpid_dispatch'))) found.push(dir);
        // setup.py install leaves an egg directory
        for (const egg of fs.readdirSync(dir).filter((e) => /^qpid_dispatch-.*\.egg$/.test(e))) found.push(path.join(dir, egg));
      }
    }
  }
  return found;
}

function routerConfig(id: string, port: number, opts: QdrouterdOptions): string {
  const section = (name: string, attrs: Record<string, string | number>): string =>
    `${name} {\n${Object.entries(attrs).map(([k, v]) => `    ${k}: ${v}\n`).join('')}}\n`;
  const addresses = [...OSLO_ADDRESSES, ...Object.entries(opts.addresses ?? {})];
  return [
    '# generated by test/src/harness/qdrouterd.ts\n',
    section('router', { mode: 'standalone', id }),
    section('listener', { host: LOOPBACK, port, role: 'normal', authenticatePeer: 'no', saslMechanisms: 'ANONYMOUS' }),
    section('log', { module: 'DEFAULT', enable: 'info+', includeTimestamp: 'yes' }),
    ...addresses.map(([prefix, distribution]) => section('address', { prefix, distribution })),
    opts.config ?? '',
  ].join('');
}

class ManagedQdrouterd extends ManagedServer implements QdrouterdServer {
  declare readonly kind: 'qdrouterd';
  constructor(
    port: number,
    dataDir: string,
    spec: LaunchSpec,
    readonly routerId: string,
    readonly configFile: string,
  ) {
    super('qdrouterd', port, `amqp://${LOOPBACK}:${port}`, dataDir, spec);
  }
}

/**
 * Starts a standalone qdrouterd on a free 127.0.0.1 port (amqp://127.0.0.1:PORT) with oslo's
 * address distributions; resolves once it answers the AMQP 1.0 protocol header. Rejects with
 * qdrouterdAvailable()'s reason when there is none.
 */
export async function startQdrouterd(opts: QdrouterdOptions = {}): Promise<QdrouterdServer> {
  const found = opts.binary !== undefined ? { bin: opts.binary } : qdrouterdAvailable();
  if ('reason' in found) throw new Error(found.reason);
  const { bin } = found;
  const pythonPath = [process.env['QDROUTERD_PYTHONPATH'], ...installedPythonPath(bin), process.env['PYTHONPATH']]
    .filter((p): p is string => !!p)
    .join(path.delimiter);
  return startWithRetry('qdrouterd', opts.port, async (dataDir) => {
    const port = opts.port ?? (await freePort());
    const routerId = opts.routerId ?? `hb${process.pid}x${nextServerNumber()}`;
    const configFile = path.join(dataDir, 'qdrouterd.conf');
    await fsp.writeFile(configFile, routerConfig(routerId, port, opts));
    const spec = amqp10Spec('qdrouterd', bin, ['-c', configFile], opts, pythonPath ? { PYTHONPATH: pythonPath } : {});
    return new ManagedQdrouterd(port, dataDir, spec, routerId, configFile);
  });
}
