/**
 * The writes of each session in this process, one at a time. Racing, every round of commits costs
 * each loser a failed commit and a read (100 writes of one session at once: over 900 commits); in
 * turn, each starts from the version the one before it ended with and loses only to other
 * processes' writes. An end does not wait: a logout or revocation must not queue behind a client's
 * renewals, nor behind a write the database is slow to answer. It races the write under way, if
 * any, and the renewals waiting go after both. Once a write fails, all those waiting go ahead
 * together: with the database out of reach each fails within a second, not one after the other.
 */
export class WriteTurns<V extends { version: number }> {
  private readonly lines = new Map<string, Line<V>>();

  async run<R extends { session: V }>(id: string, known: V, options: { urgent: boolean }, write: (from: V) => Promise<R>): Promise<R> {
    let line = this.lines.get(id);
    if (!line) this.lines.set(id, (line = { running: 0, waiting: [], last: null }));
    if (line.running > 0 && !options.urgent) {
      const waiting = line.waiting;
      await new Promise<void>((go) => waiting.push(go));
    } else {
      line.running++;
    }
    try {
      const result = await write(line.last && line.last.version > known.version ? line.last : known);
      if (!line.last || result.session.version > line.last.version) line.last = result.session;
      return result;
    } catch (err) {
      line.running += line.waiting.length;
      for (const go of line.waiting.splice(0)) go();
      throw err;
    } finally {
      line.running--;
      const next = line.running === 0 ? line.waiting.shift() : undefined;
      if (next) {
        line.running++;
        next();
      } else if (line.running === 0) {
        this.lines.delete(id);
      }
    }
  }
}

interface Line<V> {
  /** Writes under way: one, an end beside it, or several that went ahead together after a failure. Counted before a waiting one is woken. */
  running: number;
  waiting: Array<() => void>;
  /** The newest version a write of this line ended with. */
  last: V | null;
}
