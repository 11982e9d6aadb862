import { describe, expect, it } from 'vitest';
import { latencyCdfSvg, layout } from '../../bench/plot.js';

/** Well-formed enough: one root, every tag closed in order, no bare `&` or `<` in text or attributes. */
function checkXml(svg: string): void {
  const body = svg.replace(/^<\?xml[^?]*\?>\s*/, '');
  const stack: string[] = [];
  let roots = 0;
  const tag = /<(\/?)([A-Za-z][\w:-]*)((?:\s+[\w:-]+="[^"<]*")*)\s*(\/?)>/g;
  let last = 0;
  for (let m = tag.exec(body); m; m = tag.exec(body)) {
    const text = body.slice(last, m.index);
    expect(text).not.toMatch(/[<>]|&(?!(amp|lt|gt|quot|apos);)/);
    last = tag.lastIndex;
    const [, close, name, attrs, selfClose] = m;
    expect(attrs).not.toMatch(/&(?!(amp|lt|gt|quot|apos);)/);
    if (close) expect(stack.pop()).toBe(name);
    else {
      if (stack.length === 0) roots++;
      if (!selfClose) stack.push(name!);
    }
  }
  expect(body.slice(last).trim()).toBe('');
  expect(stack).toEqual([]);
  expect(roots).toBe(1);
}

describe('latencyCdfSvg', () => {
  // API: 1..100 ms, p50 50, p99 99; bare: 0..9 ms (the zeros drawn at 1 ms).
  const api = Array.from({ length: 100 }, (_, i) => 100 - i);
  const bare = Array.from({ length: 200 }, (_, i) => i % 10);
  const svg = latencyCdfSvg('1,000 sockets <spread> & co: N = 100', [
    { label: 'API', color: '#d62728', latencies: api, n: 102 },
    { label: 'bare ws', color: '#1f77b4', latencies: bare },
  ]);

  it('is well-formed and escapes the title', () => {
    expect(svg.startsWith('<?xml')).toBe(true);
    checkXml(svg);
    expect(svg).toContain('1,000 sockets &lt;spread&gt; &amp; co: N = 100');
  });

  it('has one CDF per series, in its colour, and says what is missing', () => {
    expect(svg.match(/<path class="cdf"/g)).toHaveLength(2);
    expect(svg).toMatch(/<path class="cdf" data-series="API" d="[^"]+" fill="none" stroke="#d62728"/);
    expect(svg).toMatch(/<path class="cdf" data-series="bare ws" d="[^"]+" fill="none" stroke="#1f77b4"/);
    expect(svg).toContain('API: 100 events, 2 missing');
    expect(svg).toContain('bare ws: 200 events<');
  });

  it('marks p50 and p99 of each series at their x on the log axis', () => {
    // The axis runs from 1 ms to 100 ms (the power of ten at or above the largest value).
    const xOf = (ms: number) => layout.left + (Math.log10(Math.max(1, ms)) / 2) * (layout.width - layout.left - layout.right);
    const mark = (name: string, series: string) => {
      const m = new RegExp(`<line class="mark ${name}" data-series="${series}" data-ms="([\\d.]+)" x1="([\\d.]+)"`).exec(svg);
      expect(m, `${name} of ${series}`).not.toBeNull();
      return { ms: Number(m![1]), x: Number(m![2]) };
    };
    expect(mark('p99', 'API')).toEqual({ ms: 99, x: expect.closeTo(xOf(99), 1) });
    expect(mark('p50', 'API')).toEqual({ ms: 50, x: expect.closeTo(xOf(50), 1) });
    expect(mark('p99', 'bare ws')).toEqual({ ms: 9, x: expect.closeTo(xOf(9), 1) });
    expect(mark('p50', 'bare ws')).toEqual({ ms: 4, x: expect.closeTo(xOf(4), 1) });
    // The right end of the plot is 100 ms.
    expect(xOf(100)).toBe(layout.width - layout.right);
  });
});
