/**
 * Name-service keys of targets, and the pools of a lookup answer and which of its hosts read
 * only oslo's dict form. All cached per object: clients reuse their targets and lookup answers,
 * and building these per message showed.
 */
import type { Target } from '@hybridbus/core';
import { exchangeOf, serverKey } from '@hybridbus/core/driver';
import { recordsByPool, type HostRecord } from '@hybridbus/nameservice';

export interface TargetKeys {
  /** `<exchange>/<topic>`: every server of the topic (fanout, and calls naming no server). */
  readonly topic: string;
  /** `<exchange>/<topic>[.<server>]`: where a call or cast goes. */
  readonly rpc: string;
  /** `notify:<exchange>/<topic>`: the topic's notification listeners. */
  readonly notify: string;
}

export class Keys {
  private readonly keys = new WeakMap<Target, TargetKeys>();
  private readonly byPool = new WeakMap<readonly HostRecord[], Map<string, readonly HostRecord[]>>();
  private readonly dictOnly = new WeakMap<readonly HostRecord[], ReadonlySet<string>>();

  constructor(private readonly controlExchange: string) {}

  of(t: Target): TargetKeys {
    let k = this.keys.get(t);
    if (!k) {
      const exchange = exchangeOf(t, this.controlExchange);
      const topic = `${exchange}/${t.topic}`;
      k = { topic, rpc: `${exchange}/${serverKey(t)}`, notify: `notify:${topic}` };
      this.keys.set(t, k);
    }
    return k;
  }

  /**
   * Addresses in a lookup answer with any record not saying it reads format `wire`. A host has one
   * record per key, but a stale one can outlive its process for ns_ttl: a newer server's record
   * beside the record of an older one restarted on its address. The lowest format counts.
   */
  olderAt(all: readonly HostRecord[], wire: number): ReadonlySet<string> {
    let older = this.dictOnly.get(all);
    if (!older) {
      const s = new Set<string>();
      for (const r of all) if ((r.wire ?? 0) < wire) s.add(r.address);
      older = s;
      this.dictOnly.set(all, older);
    }
    return older;
  }

  /** The records of each pool in a lookup answer (a record without a pool is in pool ""). */
  pools(all: readonly HostRecord[]): Map<string, readonly HostRecord[]> {
    let pools = this.byPool.get(all);
    if (!pools) {
      pools = recordsByPool(all);
      this.byPool.set(all, pools);
    }
    return pools;
  }
}
