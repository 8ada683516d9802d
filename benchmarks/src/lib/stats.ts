/** Latency histograms (HdrHistogram) and small helpers for summarising rounds. */
import * as hdr from 'hdr-histogram-js';

export interface LatencySummary {
  /** Microseconds. */
  readonly p50: number;
  readonly p90: number;
  readonly p99: number;
  readonly max: number;
  readonly mean: number;
  readonly count: number;
}

/** Records nanoseconds; summarises in microseconds. */
export class LatencyRecorder {
  private readonly h = hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 120e9, numberOfSignificantValueDigits: 3 });

  record(ns: number): void {
    this.h.recordValue(Math.max(1, Math.round(ns)));
  }

  summary(): LatencySummary {
    const us = (ns: number): number => Math.round(ns / 100) / 10;
    return {
      p50: us(this.h.getValueAtPercentile(50)),
      p90: us(this.h.getValueAtPercentile(90)),
      p99: us(this.h.getValueAtPercentile(99)),
      max: us(this.h.maxValue),
      mean: us(this.h.mean),
      count: this.h.totalCount,
    };
  }

  /** A percentile (0–100) in microseconds. */
  percentileUs(p: number): number {
    return Math.round((p >= 100 ? this.h.maxValue : this.h.getValueAtPercentile(p)) / 100) / 10;
  }

  /** The whole histogram, compressed (HdrHistogram's base64 form), for the JSON results. */
  encoded(): string {
    return hdr.encodeIntoCompressedBase64(this.h);
  }
}

export function median(xs: readonly number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}

export const nowNs = (): number => Number(process.hrtime.bigint());
