/**
 * Peers whose sends failed lately, and why: what a direct driver's health() reports as
 * `degraded`. A peer leaves the list when it is reached again (`clear`) or once its trouble is
 * older than the window given to `reason` (a name service offers a forgotten peer again then).
 */
export class TroubledPeers {
  private readonly troubled = new Map<string, { at: number; reason: string }>();

  /** `what` names a peer in the summary ("server", "peer"). */
  constructor(private readonly what: string) {}

  mark(address: string, reason: string): void {
    this.troubled.set(address, { at: Date.now(), reason });
  }

  clear(address?: string): void {
    if (address === undefined) this.troubled.clear();
    else this.troubled.delete(address);
  }

  /** The latest trouble within `forMs`, and how many other peers have some; undefined when none. */
  reason(forMs: number): string | undefined {
    if (this.troubled.size === 0) return undefined;
    const since = Date.now() - forMs;
    let latest: { at: number; reason: string } | undefined;
    for (const [address, t] of this.troubled) {
      if (t.at < since) this.troubled.delete(address);
      else if (!latest || t.at > latest.at) latest = t;
    }
    if (!latest) return undefined;
    const others = this.troubled.size - 1;
    return `${latest.reason}${others > 0 ? ` (and ${others} other ${this.what}${others > 1 ? 's' : ''})` : ''}`;
  }
}
