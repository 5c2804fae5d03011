/**
 * Group commit: every publish of an event-loop turn goes to the store in one
 * `append()` (one transaction), and each publisher hears back once its
 * message is committed, never before.
 *
 * One append is in flight at a time: publishes that arrive meanwhile wait
 * for the next one, so a store may hand out offsets from its own counters
 * and a failed batch cannot leave a later one with a gap.
 */
import { setImmediate } from "node:timers";
import { ChatError } from "./errors.ts";
import type { Appended, AppendEntry, HistoryStore } from "./history_store.ts";

/** Called once per publish: an error, or the offset and epoch it got. */
export type Committed = (
  err: ChatError | undefined,
  appended?: Appended,
) => void;

export class CommitQueue {
  #store: HistoryStore;
  #lastId: () => number;
  #stored: (entries: AppendEntry[], appended: Appended[]) => void;
  #internal: (err: unknown) => void;
  #entries: AppendEntry[] = [];
  #dones: (Committed | undefined)[] = [];
  #scheduled = false;
  #busy = false;

  /**
   * `stored` runs for every committed batch, before the publishers hear
   * back (the hub delivers the messages there, in offset order).
   * `internal` hears of a bug in either (it must not stop the others).
   */
  constructor(
    store: HistoryStore,
    lastId: () => number,
    stored: (entries: AppendEntry[], appended: Appended[]) => void,
    internal: (err: unknown) => void,
  ) {
    this.#store = store;
    this.#lastId = lastId;
    this.#stored = stored;
    this.#internal = internal;
  }

  /** Messages waiting for a commit. */
  get pending(): number {
    return this.#entries.length;
  }

  add(entry: AppendEntry, done?: Committed): void {
    this.#entries.push(entry);
    this.#dones.push(done);
    this.#schedule();
  }

  #schedule(): void {
    if (this.#scheduled || this.#busy) return;
    this.#scheduled = true;
    setImmediate(this.#flush);
  }

  #flush = (): void => {
    this.#scheduled = false;
    const entries = this.#entries;
    const dones = this.#dones;
    if (entries.length === 0) return;
    this.#entries = [];
    this.#dones = [];
    this.#busy = true;
    let appending: Promise<Appended[]>;
    try {
      appending = this.#store.append(entries, this.#lastId());
    } catch (err) {
      appending = Promise.reject(err);
    }
    appending.then((appended) => {
      this.#busy = false;
      try {
        this.#stored(entries, appended);
      } catch (err) {
        this.#internal(err);
      }
      // A throwing callback must not keep the others from hearing back.
      for (let i = 0; i < dones.length;) {
        try {
          for (; i < dones.length; i++) dones[i]?.(undefined, appended[i]);
        } catch (err) {
          this.#internal(err);
          i++;
        }
      }
      if (this.#entries.length > 0) this.#schedule();
    }, (cause) => {
      this.#busy = false;
      const err = new ChatError(
        "unavailable",
        `history store unavailable: ${(cause as Error)?.message ?? cause}`,
        { cause },
      );
      for (const done of dones) {
        try {
          done?.(err);
        } catch (bug) {
          this.#internal(bug);
        }
      }
      if (this.#entries.length > 0) this.#schedule();
    });
  };
}
