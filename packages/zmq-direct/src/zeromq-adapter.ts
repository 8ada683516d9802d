/**
 * How zmq-direct calls zeromq.js outside sends and receives, kept here and checked by
 * test/src/zmq-adapter.test.ts, which fails when zeromq.js changes under them.
 *
 * 1. One ROUTER socket dials every peer, and sets options just before each connect, which
 *    libzmq reads at connect time: the peer's routing id (zeromq.js's own Router.connect sets
 *    ZMQ_CONNECT_ROUTING_ID) and, for a CURVE client, the peer's server key. On a socket that
 *    is already connected zeromq.js then warns "Socket option will not take effect until next
 *    connect/bind" through process.emitWarning: true in general, exactly what we intend here,
 *    and it would print once per peer after the first. That one warning is filtered for the
 *    length of the synchronous connect call only.
 * 2. The context's socket limit (1,023 by default) is raised to libzmq's maximum before the
 *    first socket (see socketOpened), never lowered.
 * 3. Connect, disconnect and the event observer are tried again when a signal interrupts them
 *    (see uninterrupted and observe; test/src/zmq-adapter.test.ts, zmq-sockets.test.ts and
 *    zmq-reliability.test.ts make observers, servers and dials under a storm of signals).
 */
import * as zmq from 'zeromq';

/** zeromq.js's warning text (src/socket.cc), matched whole. */
export const DEFERRED_OPTION_WARNING = 'Socket option will not take effect until next connect/bind.';

/** Run `fn` (synchronous) with the one process warning whose text is `text` filtered out. */
export function withoutWarning<T>(text: string, fn: () => T): T {
  const emit = process.emitWarning;
  process.emitWarning = ((warning: string | Error, ...rest: unknown[]) => {
    if (String(warning) === text) return;
    (emit as (...a: unknown[]) => void).call(process, warning, ...rest);
  }) as typeof process.emitWarning;
  try {
    return fn();
  } finally {
    process.emitWarning = emit;
  }
}

/** Tries of a call a signal keeps interrupting before its EINTR is thrown after all. */
const EINTR_TRIES = 100;

/** Blocks a thread for a moment (Atomics.wait on a value that never changes). */
const PAUSE = new Int32Array(new SharedArrayBuffer(4));

/**
 * Run a synchronous zeromq.js call again when a signal interrupted it. zeromq.js retries EINTR
 * itself for sends, receives and binds, but not for connect, disconnect or the monitor behind
 * `socket.events`: there libzmq polls its command pipe first, and any signal the process
 * handles (a sampling profiler's SIGPROF, SIGCHLD) interrupts that poll. The call fails before
 * it has changed anything (socket_base.cpp processes commands first), so it is safe to repeat.
 * `settling`: an error code a retry after an interrupted try may meet while libzmq's threads
 * finish cleaning up after it; it is waited out 1 ms at a time.
 */
export function uninterrupted<T>(fn: () => T, settling?: string): T {
  let interrupted = false;
  for (let tries = 1; ; tries++) {
    try {
      return fn();
    } catch (e) {
      const code = (e as { code?: unknown }).code;
      if (tries >= EINTR_TRIES) throw e;
      if (code === 'EINTR') interrupted = true;
      else if (interrupted && code === settling) Atomics.wait(PAUSE, 0, 0, 1);
      else throw e;
    }
  }
}

/** Dial `endpoint` under `routingId`, authenticating the server by `serverKey` when given. */
export function connectPeer(socket: zmq.Router, endpoint: string, routingId: string, serverKey: string | undefined): void {
  withoutWarning(DEFERRED_OPTION_WARNING, () => {
    if (serverKey !== undefined) socket.curveServerKey = serverKey;
    uninterrupted(() => socket.connect(endpoint, { routingId }));
  });
}

/** Stop dialling `endpoint`; false when the socket was not connected to it. */
export function disconnectPeer(socket: zmq.Socket, endpoint: string): boolean {
  try {
    uninterrupted(() => socket.disconnect(endpoint));
    return true;
  } catch {
    return false;
  }
}

/**
 * The socket's event observer (zeromq.js makes it on first use: a monitor socket pair bound at
 * an inproc address made from the observer's own pointer). After an interrupted try the next
 * observer is likely to get the same memory, so the same address, while libzmq's reaper thread
 * has not yet released the first monitor's: that EADDRINUSE is waited out.
 */
export function observe(socket: zmq.Socket): zmq.Observer {
  return uninterrupted(() => socket.events, 'EADDRINUSE');
}

let raised = false;

/**
 * A socket's worth of libzmq sockets is about to be made. libzmq sizes a context's socket table
 * once, when its first socket is made (ctx.cpp, start()): raising `maxSockets` afterwards does
 * nothing, so before our first socket the limit goes to the most libzmq allows. The table is an
 * array of pointers; fds stay bounded by the process's ulimit. A process hosting many servers
 * needs it: each is a ROUTER plus zeromq.js's event observer (a monitor socket pair), 3 sockets,
 * and 342 servers filled the default 1023.
 */
export function socketOpened(): void {
  if (raised) return;
  raised = true;
  const ctx = zmq.context;
  if (ctx.maxSockets < ctx.maxSocketsLimit) ctx.maxSockets = ctx.maxSocketsLimit;
}

