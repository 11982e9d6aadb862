/**
 * Placeholders in generated fuzz inputs, filled in just before an input is sent: what depends on
 * the run (ids, usernames, the clock) and what is too large to print in a counterexample.
 *
 *   ⟪own⟫ ⟪victim⟫ ⟪user⟫ ⟪pass⟫ ⟪victimUser⟫   the lane's session id, the victim's session id, ...
 *   ⟪date:90⟫                                    now + 90 s as an ISO string
 *   ⟪big:70000:61⟫                               70 000 times U+0061
 */
export const PH = {
  own: '⟪own⟫',
  victim: '⟪victim⟫',
  user: '⟪user⟫',
  pass: '⟪pass⟫',
  victimUser: '⟪victimUser⟫',
} as const;

export const date = (offsetSeconds: number) => `⟪date:${offsetSeconds}⟫`;
export const big = (unit: string, n: number) => `⟪big:${n}:${[...unit].map((c) => c.codePointAt(0)!.toString(16)).join('.')}⟫`;

export interface FillEnv {
  own: string;
  victim: string;
  user: string;
  pass: string;
  victimUser: string;
}

const PATTERN = /⟪([^⟪⟫]*)⟫/g;

export function fill(text: string, env: FillEnv): string {
  if (!text.includes('⟪')) return text;
  return text.replace(PATTERN, (whole, inner: string) => {
    const [kind, a, b] = inner.split(':');
    switch (kind) {
      case 'own':
      case 'victim':
      case 'user':
      case 'pass':
      case 'victimUser':
        return env[kind];
      case 'date': {
        const ms = Date.now() + Number(a) * 1000;
        const d = new Date(ms);
        return Number.isNaN(d.getTime()) ? String(ms) : d.toISOString();
      }
      case 'big':
        return String.fromCodePoint(...b!.split('.').map((h) => parseInt(h, 16))).repeat(Number(a));
      default:
        return whole;
    }
  });
}

/** `fill` on every string (and key) of a JSON-like value. */
export function fillValue(value: unknown, env: FillEnv): unknown {
  if (typeof value === 'string') return fill(value, env);
  if (Array.isArray(value)) return value.map((v) => fillValue(v, env));
  if (value && typeof value === 'object') {
    if (typeof (value as { toJSON?: unknown }).toJSON === 'function') return (value as { toJSON(): unknown }).toJSON();
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) setOwn(out, fill(k, env), fillValue(v, env));
    return out;
  }
  return value;
}

/** `obj[key] = value` that makes `__proto__` an own key (as JSON.parse does) instead of setting the prototype. */
export function setOwn(obj: Record<string, unknown>, key: string, value: unknown): void {
  Object.defineProperty(obj, key, { value, enumerable: true, writable: true, configurable: true });
}
