/**
 * Figures to about three significant digits, with thousands separators: 41.9, 228, 36,512.
 * The page's script gets this very function as source (client.ts), so it must stay plain
 * JavaScript once compiled: no imports, no helpers.
 */
export function formatNumber(v: number | null | undefined): string {
  if (v === null || v === undefined || !Number.isFinite(v)) return '–';
  const a = Math.abs(v);
  if (a >= 1000 || Number.isInteger(v)) return Math.round(v).toLocaleString('en-US');
  if (a >= 100) return v.toFixed(0);
  if (a >= 10) return v.toFixed(1);
  if (a >= 1) return v.toFixed(2);
  return String(Number(v.toPrecision(2)));
}
