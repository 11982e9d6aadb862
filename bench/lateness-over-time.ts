/**
 * `npx tsx bench/lateness-over-time.ts <file>…`: the events of one run (BENCH_RAW_DIR's files of its
 * load processes, together) by when they were due, in windows of BUCKET_MS (default 200) from the
 * first deadline: how many, and their latency p50 / p99 / max and server lag p50 (ms). Shows whether
 * a run's tail is spread over it or made in one stretch (the first expiries, a pause).
 */
import { readFileSync } from 'node:fs';

type Row = [deadline: number, latency: number | null, serverLag: number | null];

const files = process.argv.slice(2);
if (files.length === 0) throw new Error('usage: lateness-over-time.ts <raw file>…');
const bucketMs = Number(process.env.BUCKET_MS ?? 200);
const rows = files.flatMap((f) => JSON.parse(readFileSync(f, 'utf8')) as Row[]);
const first = Math.min(...rows.map((r) => r[0]));
const windows = new Map<number, Row[]>();
for (const row of rows) {
  const k = Math.floor((row[0] - first) / bucketMs);
  windows.set(k, [...(windows.get(k) ?? []), row]);
}
const rank = (sorted: number[], p: number) => sorted[Math.max(0, Math.ceil(p * sorted.length) - 1)] ?? NaN;
console.log('due from (ms) | events | missing | latency p50 / p99 / max | server lag p50');
for (const [k, window] of [...windows].sort((a, b) => a[0] - b[0])) {
  const late = window.flatMap((r) => (r[1] === null ? [] : [r[1]])).sort((a, b) => a - b);
  const lag = window.flatMap((r) => (r[2] === null ? [] : [r[2]])).sort((a, b) => a - b);
  const missing = window.length - late.length;
  console.log(`${k * bucketMs} | ${window.length} | ${missing} | ${rank(late, 0.5)} / ${rank(late, 0.99)} / ${late.at(-1) ?? NaN} | ${rank(lag, 0.5)}`);
}
