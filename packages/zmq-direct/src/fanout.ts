/**
 * A unicast fanout is one copy per registered server; it succeeds only when every copy did.
 * A copy that could not be delivered fails the fanout with FanoutIncomplete, which says how
 * many servers were not reached (and which), never a silent partial fanout.
 */
import { MessageDeliveryFailure } from '@hybridbus/core';
import type { LookupOptions } from '@hybridbus/nameservice';

/**
 * A fanout's lookup keeps servers hidden by forget() (a lost connection, a connect timeout):
 * forget() steers load-balanced sends elsewhere, but a fanout has no elsewhere; a server that
 * is really gone fails its copy (counted below) rather than being skipped unseen.
 */
export const EVERY_SERVER: LookupOptions = { includeForgotten: true };

/** Some copies of a fanout were not delivered: `notReached` of `servers`, listed in `addresses`. */
export class FanoutIncomplete extends MessageDeliveryFailure {
  constructor(
    readonly key: string,
    readonly servers: number,
    readonly addresses: readonly string[],
    readonly reasons: readonly Error[],
  ) {
    const first = reasons[0];
    const shown = addresses.slice(0, 5).join(', ') + (addresses.length > 5 ? `, … (${addresses.length - 5} more)` : '');
    super(`fanout to "${key}" did not reach ${addresses.length} of ${servers} servers (${shown}): ${first?.message ?? 'unknown'}`, { cause: first });
  }

  get notReached(): number {
    return this.addresses.length;
  }
}

/** The copies of a fanout that were not delivered, and why (never rejects). */
export interface Missed {
  readonly addresses: string[];
  readonly reasons: Error[];
}

/** Send a copy to each of `hosts` and wait for all to settle: those not delivered. */
export async function missedCopies(hosts: readonly string[], copy: (address: string) => Promise<void>): Promise<Missed> {
  const results = await Promise.allSettled(hosts.map(copy));
  const missed: Missed = { addresses: [], reasons: [] };
  results.forEach((r, i) => {
    if (r.status === 'fulfilled') return;
    missed.addresses.push(hosts[i] as string);
    missed.reasons.push(r.reason instanceof Error ? r.reason : new Error(String(r.reason)));
  });
  return missed;
}

/** Send a copy to each of `hosts`; resolves when all are delivered, else FanoutIncomplete. */
export async function everyCopy(key: string, hosts: readonly string[], copy: (address: string) => Promise<void>): Promise<void> {
  const missed = await missedCopies(hosts, copy);
  if (missed.addresses.length > 0) throw new FanoutIncomplete(key, hosts.length, missed.addresses, missed.reasons);
}
