/**
 * Direct mode's name-service records, shared by the subscriptions of this process: two RPC servers
 * of a topic, or two listeners of a pool, register the same record (this listener's address) under
 * the same key. The record is written by the first and removed with the last: removing it when
 * either stopped left the other running but no longer found.
 */
import type { HostRecord, NameService } from '@hybridbus/nameservice';

export class SharedRegistrations {
  private readonly held = new Map<string, number>();

  constructor(private readonly nameService: () => NameService) {}

  async register(keys: readonly string[], record: HostRecord): Promise<void> {
    const first = keys.filter((k) => this.add(k, record, 1) === 1);
    if (first.length === 0) return;
    try {
      await this.nameService().register(first, record);
    } catch (e) {
      for (const k of keys) this.add(k, record, -1); // not held: the next subscription writes it
      throw e;
    }
  }

  async unregister(keys: readonly string[], record: HostRecord): Promise<void> {
    const last = keys.filter((k) => this.add(k, record, -1) === 0);
    if (last.length > 0) await this.nameService().unregister(last, record);
  }

  private add(key: string, record: HostRecord, by: 1 | -1): number {
    const id = `${key}\n${JSON.stringify(record)}`;
    const n = Math.max(0, (this.held.get(id) ?? 0) + by);
    if (n === 0) this.held.delete(id);
    else this.held.set(id, n);
    return n;
  }
}
