/**
 * The receiving side of acked one-way messages (casts, fanouts, notifications): when to ack,
 * and what to do with a message seen before. A sender that hears nothing sends again, to the
 * same server first, so a duplicate is answered from here without running the endpoint again:
 * with the ack if it was handled, or with "working" (the sender keeps waiting) if it still runs.
 */
import { MalformedMessage } from '@hybridbus/core';
import { RecentIds } from '@hybridbus/core/driver';
import { NOTIFY, type Body, type Kind } from './frames.js';

/** What a receipt sends back: `{ i }` (done), or `{ i, w: 1 }` (still working). */
export type Answer = (body: Body) => void;

/** Call when the message has been handled (the endpoint returned or threw). Idempotent. */
export type Finish = () => void;

export const DUPLICATE = Symbol('duplicate');

/** Longest `_unique_id` remembered; oslo's are 32 hex characters. */
export const MAX_UNIQUE_ID = 256;

const noop: Finish = () => undefined;

/** The message's `_unique_id`, from the form the server decodes the record's message from (frames.ts WIRE). */
function uniqueIdOf(kind: Kind, body: Body): unknown {
  if (kind === NOTIFY) return body.n !== undefined ? body.n[6] : body.m?.['_unique_id'];
  return body.q !== undefined ? body.q[4] : body.m?.['_unique_id'];
}

export class Receipts {
  /** Per `<key> <_unique_id>`: whether it has been handled (acked), or is still running. */
  private readonly seen: RecentIds<boolean>;
  private duplicates = 0;

  constructor(ttlMs: number, maxIds: number) {
    this.seen = new RecentIds({ max: maxIds, ttlMs });
  }

  get size(): number {
    return this.seen.size;
  }

  get stats(): { duplicatesDropped: number; dedupEvicted: number } {
    return { duplicatesDropped: this.duplicates, dedupEvicted: this.seen.evicted };
  }

  /**
   * A one-way message arrived. Returns DUPLICATE when it was seen before (and answered here),
   * a MalformedMessage when its id is unusable, or the Finish to call once it is handled.
   * Messages without an ack id (`i`) are never retried, so they are neither remembered nor acked.
   */
  begin(kind: Kind, key: string, body: Body, answer: Answer): Finish | typeof DUPLICATE | MalformedMessage {
    const i = body.i;
    if (i === undefined) return noop;
    const onReceipt = body.a === 1;
    if (onReceipt) answer({ i });
    const id = uniqueIdOf(kind, body);
    let uid: string | undefined;
    if (typeof id === 'string' && id !== '') {
      if (id.length > MAX_UNIQUE_ID) return new MalformedMessage(`_unique_id of ${id.length} characters (at most ${MAX_UNIQUE_ID})`);
      // One notification may go to several topics (keys) of this process, and to several pools of
      // one topic (a copy per pool): each is delivered.
      uid = body.pool === undefined ? `${key} ${id}` : `${key}#${body.pool} ${id}`;
      const done = this.seen.get(uid);
      if (done !== undefined) {
        this.duplicates++;
        if (!onReceipt) answer(done ? { i } : { i, w: 1 });
        return DUPLICATE;
      }
      this.seen.set(uid, false);
    }
    if (onReceipt) return uid === undefined ? noop : () => void this.seen.update(uid, true);
    let finished = false;
    return () => {
      if (finished) return;
      finished = true;
      if (uid !== undefined) this.seen.update(uid, true);
      answer({ i });
    };
  }
}
