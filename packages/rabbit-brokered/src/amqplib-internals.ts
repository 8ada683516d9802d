/**
 * Everything this package takes from amqplib beyond its documented API, in one place. Each
 * item is here because no public way gives the same result; each is checked against the
 * installed amqplib by test/src/rabbit.test.ts ("amqplib internals"), so an upgrade that moves
 * one fails that test loudly instead of slowing or confusing production quietly. Tests import
 * this file as `@hybridbus/rabbit-brokered/amqplib-internals`; nothing else should.
 *
 * 1. The socket behind a connection (`connection.stream`, lib/connection.js), to batch the
 *    frames of one event-loop turn into one writev (WriteBatcher): a measured gain
 *    (benchmarks/rabbit-findings.md, "One writev per event-loop turn"). amqplib has no option
 *    for it. If the socket is not found, writes go unbatched (slower, still correct) and that
 *    is logged once.
 * 2. Why a connection attempt failed: amqplib reports a refusal during the handshake (bad
 *    login, unknown vhost) as a plain Error whose message alone carries the broker's reply
 *    code; no property does (handshakeRefusal).
 */
import type { ChannelModel } from 'amqplib';
import type { Logger } from '@hybridbus/core';

/** What we use of amqplib's socket (net.Socket or tls.TLSSocket). */
export interface SocketLike {
  prependListener(event: 'drain', listener: () => void): unknown;
  cork(): void;
  uncork(): void;
  destroy(err?: Error): void;
}

/** The socket amqplib writes every frame of `model`'s connection to, if it is where we expect. */
export function socketOf(model: ChannelModel): SocketLike | undefined {
  const stream = (model.connection as unknown as { stream?: Partial<SocketLike> } | undefined)?.stream;
  const ok = stream && ['prependListener', 'cork', 'uncork', 'destroy'].every((m) => typeof stream[m as keyof SocketLike] === 'function');
  return ok ? (stream as SocketLike) : undefined;
}

let warnedNoSocket = false;

/**
 * Call `batch()` after handing amqplib a frame: the frames written in this turn of the event
 * loop go to the socket in one writev instead of one write (a syscall) each. amqplib's muxer
 * writes from a setImmediate queued on a 'readable' nextTick of the channel's buffer; our
 * nextTick comes after that one, so the uncork's setImmediate runs right after the muxer's, in
 * the same phase. Socket writes were a quarter of a busy client's CPU (and of raw amqplib's,
 * which writes alike).
 */
export class WriteBatcher {
  private readonly socket: SocketLike | undefined;
  private corked = false;
  private wroteSinceQueued = false;

  constructor(model: ChannelModel, logger: Logger) {
    this.socket = socketOf(model);
    if (!this.socket && !warnedNoSocket) {
      warnedNoSocket = true;
      logger.warn({}, "amqplib's connection.stream is not a socket any more: frames are not batched into one write per turn (see amqplib-internals.ts)");
    }
    // While corked, the socket's buffer passes its high-water mark after ~16 KB and amqplib's
    // muxer waits for 'drain', then writes the rest frame by frame: batch those writes too.
    this.socket?.prependListener('drain', this.batch);
  }

  readonly batch = (): void => {
    this.wroteSinceQueued = true;
    if (this.corked || !this.socket) return;
    this.corked = true;
    this.socket.cork();
    process.nextTick(this.queueUncork);
  };

  private readonly queueUncork = (): void => {
    this.wroteSinceQueued = false;
    setImmediate(this.uncork);
  };

  private readonly uncork = (): void => {
    const socket = this.socket as SocketLike;
    socket.uncork();
    // Frames written after our immediate was queued (e.g. a delivery read in the poll phase)
    // have their muxer immediate behind ours: stay corked one more round for them.
    if (this.wroteSinceQueued) {
      socket.cork();
      process.nextTick(this.queueUncork);
    } else this.corked = false;
  };
}

/** Why a failed connection attempt was the broker refusing us, or undefined when it was not. */
export function handshakeRefusal(err: unknown): string | undefined {
  const msg = err instanceof Error ? err.message : String(err);
  // "Handshake terminated by server: 403 (ACCESS-REFUSED) with message ..." (lib/connection.js)
  if (/ACCESS.REFUSED|NOT.ALLOWED|\b(403|530)\b/.test(msg)) return msg;
  // A close in answer to connection.open comes without its code: the vhost does not exist or
  // the user may not use it.
  if (/Expected ConnectionOpenOk; got <ConnectionClose/.test(msg)) return `the vhost does not exist or this user may not use it (${msg})`;
  return undefined;
}
