/**
 * The calls a driver's client has in flight, by request id: where a reply, a heartbeat or a
 * lost connection finds the caller. oslo's replies come as one message `{ending: true}`, or (old
 * servers) as a result with `ending: false` followed by an empty `{ending: true}`; a bare
 * `ending: false` is a call-monitor heartbeat. That is decided here, once for every driver.
 */
import type { RpcReply } from '../message.js';

export interface PendingCall {
  /** For errors and logs: "call select_destinations to scheduler". */
  readonly what: string;
  readonly onHeartbeat: () => void;
  resolve(reply: RpcReply): void;
  reject(error: Error): void;
}

type Content = Pick<RpcReply, 'result' | 'failure'>;

export class PendingCalls<C extends PendingCall = PendingCall> {
  private readonly calls = new Map<string, C>();
  /** Results that came ahead of their final message (old two-message replies: rare). */
  private readonly early = new Map<string, Content>();

  get size(): number {
    return this.calls.size;
  }

  add(id: string, call: C): void {
    this.calls.set(id, call);
  }

  get(id: string): C | undefined {
    return this.calls.get(id);
  }

  /** The call is over (answered, cancelled, failed): forget it. */
  delete(id: string): void {
    this.calls.delete(id);
    if (this.early.size > 0) this.early.delete(id);
  }

  /** Hand a reply to the call waiting for `id`; false when nobody waits (timed out, aborted). */
  reply(id: string, reply: RpcReply): boolean {
    const call = this.calls.get(id);
    if (!call) return false;
    const content = reply.result !== null || reply.failure !== null;
    if (!reply.ending) {
      if (content) this.early.set(id, { result: reply.result, failure: reply.failure });
      call.onHeartbeat();
      return true;
    }
    const early = content ? undefined : this.early.get(id);
    this.delete(id);
    call.resolve(early ? { ...early, ending: true } : reply);
    return true;
  }

  /** Fail every call in flight (connection lost, transport closed), or those `which` picks. */
  rejectAll(error: (call: C) => Error, which?: (call: C) => boolean): void {
    for (const [id, call] of [...this.calls]) {
      if (which && !which(call)) continue;
      this.delete(id);
      call.reject(error(call));
    }
  }
}
