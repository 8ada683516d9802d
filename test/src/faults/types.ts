/**
 * The fault campaign's vocabulary: what a scenario reports, and the ledger that turns the
 * events of its child processes (sent, resolved, rejected, handled) into those counts.
 */

export interface FaultCounts {
  /** Messages the legitimate (or, for CURVE, the unauthorized) senders started. */
  sent: number;
  /** Sends whose promise resolved: the sender was told the message was delivered. */
  resolved: number;
  /** Sends whose promise rejected, by error class (`err.name`; hybridbus errors name their class). */
  rejected: Record<string, number>;
  /** Distinct messages an endpoint handled. */
  received: number;
  /** Resolved, yet handled by no endpoint. */
  lost: number;
  /** Handled more than once (by one endpoint or several). */
  duplicated: number;
  /** Processes that died from a signal nobody sent them, aborted, or exited unasked. */
  crashed: number;
  note?: string;
  /**
   * Scenario-specific figures the CI test checks (test/src/faults.test.ts), e.g. how many of
   * the calls made while Redis was down succeeded; `unsettled` (sends that neither resolved nor
   * rejected) is reported by every scenario.
   */
  facts?: Record<string, number>;
}

export type Need = 'rabbitmq' | 'redis' | 'cluster' | 'sentinel';

export interface Scenario {
  name: string;
  needs: Need[];
  run(size: 'ci' | 'full'): Promise<FaultCounts>;
}

/** What a child reports about messages (test/src/faults/child.ts batches these). */
export interface LedgerEvents {
  /** Ids whose send started. */
  sent?: string[];
  /** Ids whose send resolved. */
  ok?: string[];
  /** [id, error class, message] of sends that rejected. */
  failed?: Array<[string, string, string]>;
  /** Ids an endpoint finished handling. */
  got?: string[];
}

/** Every message's fate, across all the processes of a scenario. */
export class Ledger {
  readonly sent = new Set<string>();
  readonly ok = new Set<string>();
  readonly failed = new Map<string, { name: string; message: string }>();
  readonly deliveries = new Map<string, number>();
  /** When this process learned of each send (its sender reports in batches of at most 20 ms). */
  readonly sentAt = new Map<string, number>();

  apply(ev: LedgerEvents): void {
    const now = Date.now();
    for (const id of ev.sent ?? []) {
      this.sent.add(id);
      this.sentAt.set(id, now);
    }
    for (const id of ev.ok ?? []) this.ok.add(id);
    for (const [id, name, message] of ev.failed ?? []) this.failed.set(id, { name, message });
    for (const id of ev.got ?? []) this.deliveries.set(id, (this.deliveries.get(id) ?? 0) + 1);
  }

  /** Sends neither resolved nor rejected (their sender died, or is still waiting). */
  unsettled(): number {
    let n = 0;
    for (const id of this.sent) if (!this.ok.has(id) && !this.failed.has(id)) n++;
    return n;
  }

  /** Resolved ids nobody handled. */
  lostIds(): string[] {
    return [...this.ok].filter((id) => !this.deliveries.has(id));
  }

  rejectedByClass(filter: (id: string) => boolean = () => true): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [id, { name }] of this.failed) if (filter(id)) out[name] = (out[name] ?? 0) + 1;
    return out;
  }

  /** One example message per error class, for notes. */
  exampleErrors(): Record<string, string> {
    const out: Record<string, string> = {};
    for (const { name, message } of this.failed.values()) out[name] ??= message;
    return out;
  }

  counts(crashed: number, note?: string, facts: Record<string, number> = {}): FaultCounts {
    let duplicated = 0;
    for (const n of this.deliveries.values()) if (n > 1) duplicated++;
    return {
      sent: this.sent.size,
      resolved: this.ok.size,
      rejected: this.rejectedByClass(),
      received: this.deliveries.size,
      lost: this.lostIds().length,
      duplicated,
      crashed,
      ...(note !== undefined ? { note } : {}),
      facts: { unsettled: this.unsettled(), ...facts },
    };
  }
}

/** "MessagingTimeout:3 ConnectionLost:1", largest first; "-" for none. */
export function formatRejected(r: Record<string, number>): string {
  const parts = Object.entries(r)
    .sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]))
    .map(([k, v]) => `${k}:${v}`);
  return parts.length ? parts.join(' ') : '-';
}

export const MiB = (bytes: number): string => `${(bytes / 1048576).toFixed(1)} MiB`;
