/**
 * Group commit: every publish of an event-loop turn goes to the store in one
 * `append()` (one transaction), and each publisher hears back once its
 * message is committed, never before.
 *
 * The batch is committed at the end of the turn that queued it (the HTTP/2
 * engine's turn-end flush, http2/turn_end.ts), before that turn's frames are
 * written. With a synchronous store (`appendSync`: the log and memory
 * stores) the deliveries and the answers are then written in the same turn,
 * in the same socket write as the rest of it: no `setImmediate` and no
 * promise between a request and its answer.
 *
 * One append is in flight at a time: publishes that arrive meanwhile wait
 * for the next one, so a store may hand out offsets from its own counters
 * and a failed batch cannot leave a later one with a gap.
 */
import { beforeTurnEnds } from "../../http2/turn_end.ts";
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
    beforeTurnEnds(this.#flush);
  }

  #flush = (): void => {
    this.#scheduled = false;
    const entries = this.#entries;
    const dones = this.#dones;
    if (entries.length === 0) return;
    this.#entries = [];
    this.#dones = [];
    this.#busy = true;
    const sync = this.#store.appendSync;
    if (sync !== undefined) {
      let appended: Appended[];
      try {
        appended = sync.call(this.#store, entries, this.#lastId());
      } catch (cause) {
        return this.#failed(dones, cause);
      }
      return this.#committed(entries, dones, appended);
    }
    let appending: Promise<Appended[]>;
    try {
      appending = this.#store.append(entries, this.#lastId());
    } catch (err) {
      appending = Promise.reject(err);
    }
    appending.then(
      (appended) => this.#committed(entries, dones, appended),
      (cause) => this.#failed(dones, cause),
    );
  };

  #committed(
    entries: AppendEntry[],
    dones: (Committed | undefined)[],
    appended: Appended[],
  ): void {
    this.#busy = false;
    try {
      this.#stored(entries, appended);
    } catch (err) {
      this.#internal(err);
    }
    // A throwing callback must not keep the others from hearing back. One
    // loop with the try inside: V8 compiled the inner loop of a nested
    // try-around-loop form on its own (OSR) and left it with a deopt ("exit
    // from OSR'd inner loop") on every batch of a pipelining client, ~200
    // times per 20k echoes (docs/perf-log.md, "stop 24").
    for (let i = 0; i < dones.length; i++) {
      const done = dones[i];
      if (done === undefined) continue;
      try {
        done(undefined, appended[i]);
      } catch (err) {
        this.#internal(err);
      }
    }
    if (this.#entries.length > 0) this.#schedule();
  }

  #failed(dones: (Committed | undefined)[], cause: unknown): void {
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
  }
}
