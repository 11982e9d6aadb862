/**
 * What a session holds in a process (its sockets, its subscribers) is almost always one item: kept
 * as the item itself until a second comes, then as a Set, so that each idle session does not pay
 * for a Set. The items are never null nor Sets themselves.
 */
export type OneOrMore<T> = T | Set<T> | null;

export function withItem<T>(held: OneOrMore<T>, item: T): OneOrMore<T> {
  if (held === null) return item;
  if (held instanceof Set) return held.add(item);
  return held === item ? held : new Set([held, item]);
}

export function withoutItem<T>(held: OneOrMore<T>, item: T): OneOrMore<T> {
  if (held === item) return null;
  if (!(held instanceof Set)) return held;
  held.delete(item);
  return held.size > 0 ? held : null;
}

export const holds = <T>(held: OneOrMore<T>, item: T): boolean => held === item || (held instanceof Set && held.has(item));

export const countOf = <T>(held: OneOrMore<T>): number => (held instanceof Set ? held.size : held === null ? 0 : 1);

export const itemsOf = <T>(held: OneOrMore<T>): T[] => (held instanceof Set ? [...held] : held === null ? [] : [held]);
