/**
 * The two places zmq-direct leans on zeromq.js beyond its documented use, kept here and
 * checked by test/src/zmq-adapter.test.ts, which fails when zeromq.js changes under them.
 *
 * 1. One ROUTER socket dials every peer, and sets options just before each connect, which
 *    libzmq reads at connect time: the peer's routing id (zeromq.js's own Router.connect sets
 *    ZMQ_CONNECT_ROUTING_ID) and, for a CURVE client, the peer's server key. On a socket that
 *    is already connected zeromq.js then warns "Socket option will not take effect until next
 *    connect/bind" through process.emitWarning: true in general, exactly what we intend here,
 *    and it would print once per peer after the first. That one warning is filtered for the
 *    length of the synchronous connect call only.
 * 2. The context's socket limit (1,024 by default) is raised when a process opens more sockets
 *    than that (a process hosting many servers), never lowered.
 */
import * as zmq from 'zeromq';

/** zeromq.js's warning text (src/socket.cc), matched whole. */
export const DEFERRED_OPTION_WARNING = 'Socket option will not take effect until next connect/bind.';

/** Dial `endpoint` under `routingId`, authenticating the server by `serverKey` when given. */
export function connectPeer(socket: zmq.Router, endpoint: string, routingId: string, serverKey: string | undefined): void {
  const emit = process.emitWarning;
  process.emitWarning = ((warning: string | Error, ...rest: unknown[]) => {
    if (String(warning) === DEFERRED_OPTION_WARNING) return;
    (emit as (...a: unknown[]) => void).call(process, warning, ...rest);
  }) as typeof process.emitWarning;
  try {
    if (serverKey !== undefined) socket.curveServerKey = serverKey;
    socket.connect(endpoint, { routingId });
  } finally {
    process.emitWarning = emit;
  }
}

let open = 0;

/** A socket is about to be made: make room for it in the context's limit if needed. */
export function socketOpened(): void {
  open++;
  const ctx = zmq.context;
  if (open + 16 > ctx.maxSockets && ctx.maxSockets < ctx.maxSocketsLimit) {
    ctx.maxSockets = Math.min(Math.max(ctx.maxSockets * 2, open + 16), ctx.maxSocketsLimit);
  }
}

export function socketClosed(): void {
  open--;
}
