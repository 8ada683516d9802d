/**
 * A throw-away AMQP 1.0 broker for tests (launcher.ts): one of the Qpid Proton example brokers
 * Debian ships in libqpid-proton11-dev-examples, on a free 127.0.0.1 port, its output in a private
 * data dir, ready once the port answers the AMQP 1.0 protocol header with an AMQP 1.0 header.
 *
 * - 'cpp' (default): examples/cpp/broker.cpp, compiled with g++ against libqpid-proton-cpp12-dev
 *   once per source (a hash of the sources and the compile command names a directory in the
 *   per-user cache <tmpdir>/hybridbus-proton-broker-<uid>/; a build is moved there by an atomic
 *   rename, so test files building at once don't race, and later runs reuse it). Multi-threaded;
 *   round-robins a queue's messages between its consumers.
 * - 'python': examples/python/broker.py under Debian's /usr/bin/python3 (python3-qpid-proton).
 *   Slower, but nothing to compile.
 *
 * Both are store-and-forward queue brokers and nothing more: an address is a queue (created on
 * first use, in memory only: restart() loses them), no multicast, `accepted` on enqueue, dynamic
 * sources (a generated address) supported, SASL ANONYMOUS only, no `product` connection property.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

import { amqp10HeaderReply, freePort, LOOPBACK } from './ports.js';
import { isExecutableFile, ManagedServer, quickStartSpec, startWithRetry, type LaunchSpec, type RunningServer, type ServerKind, type StartOptions } from './managed-server.js';

const run = promisify(execFile);

export type ProtonBrokerFlavour = 'cpp' | 'python';

export interface ProtonBrokerServer extends RunningServer {
  readonly kind: 'proton-broker';
  readonly flavour: ProtonBrokerFlavour;
}

export interface ProtonBrokerOptions extends StartOptions {
  /** 'cpp' (default: the faster one) or 'python'. */
  flavour?: ProtonBrokerFlavour;
  /**
   * 'cpp': a broker executable to run instead of the compiled example; 'python': the Python
   * interpreter for broker.py (default /usr/bin/python3, Debian's, where python3-qpid-proton is).
   */
  binary?: string;
}

const EXAMPLES_PACKAGE = 'libqpid-proton11-dev-examples';

/** Proton's examples: PROTON_EXAMPLES_DIR, else where Debian's package puts them. */
const examplesDir = (): string => process.env['PROTON_EXAMPLES_DIR'] ?? '/usr/share/proton/examples';

/** The path of one example file; an error naming the Debian package if it is not there. */
function exampleFile(rel: string): string {
  const file = path.join(examplesDir(), rel);
  if (!fs.existsSync(file)) {
    throw new Error(
      `the Qpid Proton example ${file} is missing: install the Debian package ${EXAMPLES_PACKAGE} ` +
        '(scripts/install-deps.sh does), or set PROTON_EXAMPLES_DIR to a directory with Proton\'s examples',
    );
  }
  return file;
}

// ---------------------------------------------------------------------------
// The C++ broker, compiled once per source into a per-user cache
// ---------------------------------------------------------------------------

const CXX = 'g++';
const CXX_ARGS = ['-O2', '-std=c++11', 'broker.cpp', '-o', 'broker', '-lqpid-proton-cpp', '-lpthread'];
const builds = new Map<string, Promise<string>>();

/** <tmpdir>/hybridbus-proton-broker-<uid>, created 0700; refused unless it is ours and private. */
async function cacheRoot(): Promise<string> {
  const root = path.join(os.tmpdir(), `hybridbus-proton-broker-${process.getuid?.() ?? 'user'}`);
  await fsp.mkdir(root, { mode: 0o700 }).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== 'EEXIST') throw err;
  });
  const st = await fsp.lstat(root);
  const mine = process.getuid === undefined || st.uid === process.getuid();
  if (!st.isDirectory() || !mine || (st.mode & 0o022) !== 0) {
    throw new Error(`${root} is not a private directory of this user: remove it so the Proton C++ broker can be built there`);
  }
  return root;
}

async function buildCppBroker(key: string, sources: readonly string[]): Promise<string> {
  const root = await cacheRoot();
  const final = path.join(root, key);
  const bin = path.join(final, 'broker');
  if (isExecutableFile(bin)) return bin;
  const work = await fsp.mkdtemp(path.join(root, `${key}.build-`));
  try {
    await Promise.all(sources.map((f) => fsp.copyFile(f, path.join(work, path.basename(f)))));
    await run(CXX, CXX_ARGS, { cwd: work, timeout: 120_000, maxBuffer: 4 * 1024 * 1024 }).catch((err: NodeJS.ErrnoException & { stderr?: string }) => {
      const detail = err.code === 'ENOENT' ? `${CXX} not found` : `${err.message}\n${(err.stderr ?? '').slice(-3000)}`;
      throw new Error(
        `compiling the Qpid Proton C++ example broker failed (it needs the Debian packages g++ and libqpid-proton-cpp12-dev; ` +
          `scripts/install-deps.sh installs them): ${detail}`,
      );
    });
    // Atomic: a concurrent build of the same sources either lost (its rename fails, ours is used)
    // or won (ours fails here, its result is used); nobody ever runs a half-written binary.
    await fsp.rename(work, final).catch((err: NodeJS.ErrnoException) => {
      if (!((err.code === 'ENOTEMPTY' || err.code === 'EEXIST') && isExecutableFile(bin))) throw err;
    });
    return bin;
  } finally {
    await fsp.rm(work, { recursive: true, force: true });
  }
}

/**
 * The compiled Proton C++ example broker (built on first use, then from the cache). Rejects with
 * an error naming the Debian package when the examples, the headers or g++ are missing.
 */
export async function protonCppBroker(): Promise<string> {
  const sources = ['broker.cpp', 'options.hpp'].map((f) => exampleFile(path.join('cpp', f)));
  const hash = createHash('sha256').update(JSON.stringify([CXX, CXX_ARGS]));
  for (const f of sources) hash.update(await fsp.readFile(f));
  const key = hash.digest('hex').slice(0, 16);
  let build = builds.get(key);
  if (!build) {
    build = buildCppBroker(key, sources);
    builds.set(key, build);
    build.catch(() => builds.delete(key)); // a failed build is tried again next time
  }
  return build;
}

// ---------------------------------------------------------------------------
// The Python broker
// ---------------------------------------------------------------------------

const pythonChecks = new Map<string, Promise<void>>();

/** Rejects, naming python3-qpid-proton, unless `python` can import proton (checked once per interpreter). */
function checkPythonProton(python: string): Promise<void> {
  let check = pythonChecks.get(python);
  if (!check) {
    check = run(python, ['-c', 'import proton'], { timeout: 30_000 }).then(
      () => undefined,
      (err: Error & { stderr?: string }) => {
        pythonChecks.delete(python);
        throw new Error(
          `${python} cannot import proton, which the Qpid Proton example broker needs: install the Debian package ` +
            `python3-qpid-proton (scripts/install-deps.sh does): ${(err.stderr ?? err.message).trim().split('\n').pop()}`,
        );
      },
    );
    pythonChecks.set(python, check);
  }
  return check;
}

// ---------------------------------------------------------------------------
// Launching
// ---------------------------------------------------------------------------

/**
 * How to launch an AMQP 1.0 server (a Proton broker, qdrouterd) as `kind`: ready once its port
 * answers the AMQP 1.0 header with an AMQP 1.0 or SASL header; 15 s to start, 5 s to stop.
 */
export function amqp10Spec(kind: ServerKind, command: string, args: string[], opts: StartOptions, env: NodeJS.ProcessEnv = {}): LaunchSpec {
  const probe = async (p: number): Promise<boolean> => (await amqp10HeaderReply(p, undefined, 1000)) !== null;
  return quickStartSpec(kind, command, args, opts, probe, 'the AMQP 1.0 protocol header with an AMQP 1.0 (or SASL) header', env);
}

class ManagedProtonBroker extends ManagedServer implements ProtonBrokerServer {
  declare readonly kind: 'proton-broker';
  constructor(port: number, dataDir: string, spec: LaunchSpec, readonly flavour: ProtonBrokerFlavour) {
    super('proton-broker', port, `amqp://${LOOPBACK}:${port}`, dataDir, spec);
  }
}

/**
 * Starts a Qpid Proton example broker (`flavour` 'cpp', the default, or 'python') on a free
 * 127.0.0.1 port: amqp://127.0.0.1:PORT. Resolves once it answers the AMQP 1.0 protocol header.
 */
export async function startProtonBroker(opts: ProtonBrokerOptions = {}): Promise<ProtonBrokerServer> {
  const flavour = opts.flavour ?? 'cpp';
  let command: string;
  let script: string[] = [];
  if (flavour === 'cpp') {
    command = opts.binary ?? (await protonCppBroker());
  } else {
    command = opts.binary ?? '/usr/bin/python3';
    script = [exampleFile(path.join('python', 'broker.py'))];
    await checkPythonProton(command);
  }
  return startWithRetry('proton-broker', opts.port, async (dataDir) => {
    const port = opts.port ?? (await freePort());
    const args = [...script, '-a', `${LOOPBACK}:${port}`];
    const spec = amqp10Spec('proton-broker', command, args, opts, { PYTHONUNBUFFERED: '1' });
    return new ManagedProtonBroker(port, dataDir, spec, flavour);
  });
}
