/**
 * The latency-distribution plot of one bench scenario, as SVG text (no dependency): the CDF of
 * (event received − expiresAt) in ms on a log-scaled x axis, one step line per series (the API and
 * the bare baseline), with each series' p50 and p99 marked by a dashed vertical line.
 *
 * Values under 1 ms (0, or early events) are drawn at 1 ms, the left edge. The fraction on the
 * y axis is of `n` (received plus missing), so a series with missing events stops short of 100 %.
 */

export interface Series {
  label: string;
  color: string;
  /** Received − expiresAt of each received event, ms. */
  latencies: number[];
  /** Events expected (received + missing); defaults to latencies.length. */
  n?: number;
}

/** Plot geometry, in SVG user units. */
export const layout = { width: 760, height: 420, left: 64, right: 24, top: 56, bottom: 56 } as const;
const plotW = layout.width - layout.left - layout.right;
const plotH = layout.height - layout.top - layout.bottom;

/** Same rank as bench/load.ts: the smallest value with at least p of the values at or under it. */
export function percentile(sorted: ArrayLike<number>, p: number): number {
  return sorted[Math.max(0, Math.ceil(p * sorted.length) - 1)]!;
}

/** The right end of the x axis: the power of ten at or above the largest value (at least 10 ms). */
export function xMaxMs(series: Series[]): number {
  const max = Math.max(10, ...series.flatMap((s) => (s.latencies.length ? [Math.max(...s.latencies)] : [])));
  return 10 ** Math.ceil(Math.log10(max));
}

/** x of a latency in ms on the log axis from 1 ms to `hiMs`. */
export function xOf(ms: number, hiMs: number): number {
  return layout.left + (Math.log10(Math.max(1, ms)) / Math.log10(hiMs)) * plotW;
}
const yOf = (fraction: number) => layout.top + (1 - fraction) * plotH;
const f1 = (v: number) => (Math.round(v * 10) / 10).toString();
const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

export function latencyCdfSvg(title: string, series: Series[]): string {
  const hi = xMaxMs(series);
  const out: string[] = [
    `<?xml version="1.0" encoding="UTF-8"?>`,
    `<svg xmlns="http://www.w3.org/2000/svg" width="${layout.width}" height="${layout.height}" viewBox="0 0 ${layout.width} ${layout.height}" font-family="sans-serif" font-size="12">`,
    `<rect width="${layout.width}" height="${layout.height}" fill="white"/>`,
    `<text x="${layout.width / 2}" y="22" text-anchor="middle" font-size="14" font-weight="bold">${esc(title)}</text>`,
  ];
  // Grid and axes: a line per decade (labelled) and at 2× and 5× of each; y every 25 % and at 99 %.
  for (let d = 1; d <= hi; d *= 10) {
    for (const m of [1, 2, 5]) {
      const v = d * m;
      if (v > hi) continue;
      const x = f1(xOf(v, hi));
      out.push(`<line x1="${x}" y1="${layout.top}" x2="${x}" y2="${layout.top + plotH}" stroke="${m === 1 ? '#ccc' : '#eee'}"/>`);
      if (m === 1) out.push(`<text x="${x}" y="${layout.top + plotH + 16}" text-anchor="middle">${d >= 1000 ? `${d / 1000} s` : d}</text>`);
    }
  }
  for (const fr of [0, 0.25, 0.5, 0.75, 0.99, 1]) {
    const y = f1(yOf(fr));
    out.push(`<line x1="${layout.left}" y1="${y}" x2="${layout.left + plotW}" y2="${y}" stroke="${fr === 0.99 ? '#bbb' : '#eee'}"${fr === 0.99 ? ' stroke-dasharray="2 2"' : ''}/>`);
    out.push(
      fr === 0.99 // labelled inside, under its line: next to 100 % it would overlap
        ? `<text x="${layout.left + 4}" y="${f1(yOf(fr) + 12)}" fill="#888" font-size="10">99 %</text>`
        : `<text x="${layout.left - 6}" y="${f1(yOf(fr) + 4)}" text-anchor="end">${Math.round(fr * 100)} %</text>`,
    );
  }
  out.push(
    `<rect x="${layout.left}" y="${layout.top}" width="${plotW}" height="${plotH}" fill="none" stroke="#333"/>`,
    `<text x="${layout.left + plotW / 2}" y="${layout.height - 12}" text-anchor="middle">event received − expiresAt, ms (log scale; under 1 ms drawn at 1)</text>`,
    `<text transform="translate(16 ${layout.top + plotH / 2}) rotate(-90)" text-anchor="middle">events received by then</text>`,
  );
  series.forEach((s, i) => {
    const sorted = Float64Array.from(s.latencies).sort();
    const n = s.n ?? sorted.length;
    if (sorted.length > 0) {
      // A step per distinct value (the latencies are whole ms, so a few hundred steps at most).
      let d = `M${f1(xOf(sorted[0]!, hi))} ${f1(yOf(0))}`;
      for (let j = 0; j < sorted.length; j++) {
        if (j + 1 < sorted.length && sorted[j + 1] === sorted[j]) continue;
        d += `H${f1(xOf(sorted[j]!, hi))}V${f1(yOf((j + 1) / n))}`;
      }
      out.push(`<path class="cdf" data-series="${esc(s.label)}" d="${d}H${layout.left + plotW}" fill="none" stroke="${s.color}" stroke-width="2"/>`);
      for (const [name, p] of [['p50', 0.5], ['p99', 0.99]] as const) {
        const v = percentile(sorted, p);
        const x = f1(xOf(v, hi));
        out.push(
          `<line class="mark ${name}" data-series="${esc(s.label)}" data-ms="${v}" x1="${x}" y1="${layout.top}" x2="${x}" y2="${layout.top + plotH}" stroke="${s.color}" stroke-dasharray="5 3"/>`,
          // Right of its line, or left of it near the right edge.
          `<text x="${f1(xOf(v, hi) + (xOf(v, hi) > layout.left + plotW - 60 ? -3 : 3))}" y="${layout.top + plotH - 8 - 14 * (2 * i + (name === 'p99' ? 1 : 0))}"` +
            `${xOf(v, hi) > layout.left + plotW - 60 ? ' text-anchor="end"' : ''} fill="${s.color}">${name} ${Math.round(v)}</text>`,
        );
      }
    }
    // Legend, between the title and the plot.
    const lx = layout.left + 300 * i;
    const ly = layout.top - 12;
    const missing = n - sorted.length;
    out.push(
      `<line x1="${lx}" y1="${ly - 4}" x2="${lx + 24}" y2="${ly - 4}" stroke="${s.color}" stroke-width="2"/>`,
      `<text x="${lx + 30}" y="${ly}">${esc(s.label)}: ${sorted.length.toLocaleString('en')} events${missing ? `, ${missing.toLocaleString('en')} missing` : ''}</text>`,
    );
  });
  out.push('</svg>', '');
  return out.join('\n');
}
