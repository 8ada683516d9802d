/**
 * Payload sizes: a fixed size, or `oslo`, the sizes of real OpenStack control-plane messages
 * drawn the way oslo.messaging's simulator draws them.
 *
 * Data: tools/messages_length.yaml in openstack/oslo.messaging (commit 8ea2d5b4), the lengths
 * of 4077 messages RabbitMQ carried during a Rally boot_and_delete_server run. Its
 * tools/simulator.py (init_random_generator) buckets them by 500 bytes and draws a bucket by
 * its share, then a length uniformly within the bucket, and pre-generates 1000 messages that
 * its clients cycle through. Below are the bucket counts of that file (bucket start → count).
 */
import type { PayloadSpec } from './contender.js';

const OSLO_BUCKET = 500;
const OSLO_BUCKETS: ReadonlyArray<readonly [number, number]> = [
  [501, 56], [1001, 105], [1501, 801], [2001, 1166], [2501, 616], [3001, 150], [3501, 100], [4001, 37],
  [4501, 177], [5001, 250], [5501, 99], [6001, 154], [6501, 211], [7001, 52], [7501, 53], [11001, 50],
];
/** As many messages as the simulator pre-generates (its MESSAGES_LIMIT). */
const OSLO_MESSAGES = 1000;

/** A small seeded PRNG (mulberry32): every contender and every round gets the same sizes. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export type PayloadOption = number | 'oslo';

/** Parse `--payload`: a byte count (≥ 1) or `oslo`; undefined when it is neither. */
export function parsePayload(text: string): PayloadOption | undefined {
  if (text === 'oslo') return 'oslo';
  return /^\d+$/.test(text) && Number(text) >= 1 ? Number(text) : undefined;
}

export function payloadSpec(p: PayloadOption, seed = 1): PayloadSpec {
  if (p !== 'oslo') return { sizes: [p] };
  const random = rng(seed);
  const total = OSLO_BUCKETS.reduce((a, [, n]) => a + n, 0);
  const sizes: number[] = [];
  for (let i = 0; i < OSLO_MESSAGES; i++) {
    let r = random() * total;
    let start = OSLO_BUCKETS[OSLO_BUCKETS.length - 1]![0];
    for (const [s, n] of OSLO_BUCKETS) {
      if ((r -= n) < 0) {
        start = s;
        break;
      }
    }
    sizes.push(start + Math.floor(random() * OSLO_BUCKET));
  }
  return { sizes };
}

/** Mean size, for the report's settings. */
export const meanSize = (p: PayloadSpec): number => Math.round(p.sizes.reduce((a, b) => a + b, 0) / p.sizes.length);
