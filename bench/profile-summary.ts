/**
 * `tsx bench/profile-summary.ts file.cpuprofile`: where a V8 CPU profile spent its time, by package
 * (or src/ file) and by function (self time), for reading the API server's expiry phase; then the
 * longest stretches without an idle sample (what held the event loop), each by the callback that
 * the loop ran (the frame under the root) and by function.
 */
import { readFile } from 'node:fs/promises';

interface Node {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
  children?: number[];
}

const file = process.argv[2];
if (!file) throw new Error('usage: tsx bench/profile-summary.ts file.cpuprofile');
const profile = JSON.parse(await readFile(file, 'utf8')) as { nodes: Node[]; samples: number[]; timeDeltas: number[]; startTime: number };

const sum = (values: number[]) => values.reduce((a, b) => a + b, 0);
const total = sum(profile.timeDeltas);

function where(url: string, name: string): string {
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (pkg) return pkg[1]!;
  const own = /\/(src|bench)\/(.*)$/.exec(url);
  if (own) return `${own[1]}/${own[2]}`;
  if (url.startsWith('node:')) return url;
  return url ? 'other' : `(${name || 'native'})`;
}

const nodes = new Map(profile.nodes.map((n) => [n.id, n]));
const parent = new Map<number, number>();
for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
const place = (n: Node) => where(n.callFrame.url, n.callFrame.functionName);
const fnName = (n: Node) => `${n.callFrame.functionName || '(anonymous)'} ${place(n)}:${n.callFrame.lineNumber + 1}`;
/** The frame just under the root: the callback the event loop ran (or a pseudo-frame such as (garbage collector)). */
function entry(id: number): Node {
  let n = id;
  while (parent.has(parent.get(n)!)) n = parent.get(n)!;
  return nodes.get(n)!;
}

const add = (m: Map<string, number>, key: string, us: number) => m.set(key, (m.get(key) ?? 0) + us);
function tally(samples: Array<[id: number, us: number]>) {
  const byPlace = new Map<string, number>();
  const byFunction = new Map<string, number>();
  const byEntry = new Map<string, number>();
  for (const [id, us] of samples) {
    const n = nodes.get(id)!;
    add(byPlace, place(n), us);
    add(byFunction, fnName(n), us);
    add(byEntry, fnName(entry(id)), us);
  }
  return { byPlace, byFunction, byEntry };
}

const top = (m: Map<string, number>, n: number, whole = total) =>
  [...m.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, n)
    .map(([k, us]) => `${(us / 1000).toFixed(0).padStart(7)} ms ${((100 * us) / whole).toFixed(1).padStart(5)} %  ${k}`)
    .join('\n');

const timed = profile.samples.map((id, i): [number, number] => [id, profile.timeDeltas[i] ?? 0]);
const all = tally(timed);
console.log(`${(total / 1000).toFixed(0)} ms sampled\n\nBy package or file (self time):\n${top(all.byPlace, 20)}\n\nBy function (self time):\n${top(all.byFunction, 30)}`);

const isIdle = (id: number) => nodes.get(id)!.callFrame.functionName === '(idle)';
const stretches: Array<{ startUs: number; samples: Array<[number, number]> }> = [];
let at = 0;
let current: (typeof stretches)[number] | null = null;
for (const [id, us] of timed) {
  at += us;
  if (isIdle(id)) current = null;
  else if (current) current.samples.push([id, us]);
  else stretches.push((current = { startUs: at, samples: [[id, us]] }));
}
const lengthUs = (s: (typeof stretches)[number]) => sum(s.samples.map(([, us]) => us));
for (const s of stretches.sort((a, b) => lengthUs(b) - lengthUs(a)).slice(0, 3)) {
  const t = tally(s.samples);
  const us = lengthUs(s);
  console.log(`\nBusy ${(us / 1000).toFixed(0)} ms without an idle sample, from ${(s.startUs / 1000).toFixed(0)} ms into the profile.`);
  console.log(`By callback the loop ran:\n${top(t.byEntry, 8, us)}\nBy function (self time):\n${top(t.byFunction, 12, us)}`);
}
