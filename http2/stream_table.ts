/**
 * The open streams of one connection by id: an open-addressing hash table
 * (linear probing, deletion by backward shift) over a plain array.
 *
 * Why not a `Map`: after a rehash V8 keeps a Map's old backing table linked
 * to the new one, entries included (so live iterators can follow). Once a
 * connection's table is in the old generation (a mark-compact during load
 * promotes it), every later table and the streams in it stay reachable from
 * that dead old table until the next mark-compact. Under unary load almost
 * every finished call was promoted that way: ~5 MB per scavenge, 8-13 ms
 * pauses, an old generation growing until the next mark-compact
 * (docs/perf-log.md, "the promoted calls"). A table replaced here is plain
 * garbage at once.
 *
 * Stream ids of one role are odd (or even) and increasing, so `id >>> 1`
 * puts consecutive streams in consecutive slots.
 *
 * @module
 */

const MIN_CAPACITY = 8;
/**
 * A table shrinks only above this: a connection whose calls come and go in
 * batches (all answered in one turn) would otherwise halve and double its
 * table at every batch.
 */
const SHRINK_ABOVE = 64;

/** Streams by id; see the module doc. */
export class StreamTable<S extends { readonly id: number }> {
  #slots: (S | undefined)[] = emptySlots(MIN_CAPACITY);
  #mask = MIN_CAPACITY - 1;
  #size = 0;

  /** Open streams. */
  get size(): number {
    return this.#size;
  }

  get(id: number): S | undefined {
    const slots = this.#slots;
    const mask = this.#mask;
    for (let i = (id >>> 1) & mask;; i = (i + 1) & mask) {
      const s = slots[i];
      if (s === undefined || s.id === id) return s;
    }
  }

  /** Adds `s` under its id, or replaces the stream of that id. */
  set(s: S): void {
    const slots = this.#slots;
    const mask = this.#mask;
    for (let i = (s.id >>> 1) & mask;; i = (i + 1) & mask) {
      const at = slots[i];
      if (at === undefined) break;
      if (at.id === s.id) {
        slots[i] = s;
        return;
      }
    }
    // At most half full: probes stay short.
    if (2 * (this.#size + 1) > slots.length) this.#resize(2 * slots.length);
    this.#place(s);
    this.#size++;
  }

  /** Removes the stream of `id`; false if there was none. */
  delete(id: number): boolean {
    const slots = this.#slots;
    const mask = this.#mask;
    let i = (id >>> 1) & mask;
    for (;; i = (i + 1) & mask) {
      const s = slots[i];
      if (s === undefined) return false;
      if (s.id === id) break;
    }
    slots[i] = undefined;
    this.#size--;
    // Backward shift: a later stream of the run whose home slot is not in
    // (i, j] moves into the hole, so lookups never cross an empty slot.
    for (let j = (i + 1) & mask;; j = (j + 1) & mask) {
      const s = slots[j];
      if (s === undefined) break;
      const home = (s.id >>> 1) & mask;
      const stays = i <= j ? i < home && home <= j : i < home || home <= j;
      if (stays) continue;
      slots[i] = s;
      slots[j] = undefined;
      i = j;
    }
    // A connection that once had many streams gives the room back.
    if (slots.length > SHRINK_ABOVE && 8 * this.#size < slots.length) {
      this.#resize(slots.length >>> 1);
    }
    return true;
  }

  /** The open streams, as a new array (safe to change the table meanwhile). */
  values(): S[] {
    const out: S[] = [];
    for (const s of this.#slots) if (s !== undefined) out.push(s);
    return out;
  }

  clear(): void {
    this.#slots = emptySlots(MIN_CAPACITY);
    this.#mask = MIN_CAPACITY - 1;
    this.#size = 0;
  }

  #resize(capacity: number): void {
    const old = this.#slots;
    this.#slots = emptySlots(capacity);
    this.#mask = capacity - 1;
    for (const s of old) if (s !== undefined) this.#place(s);
  }

  #place(s: S): void {
    const slots = this.#slots;
    const mask = this.#mask;
    let i = (s.id >>> 1) & mask;
    while (slots[i] !== undefined) i = (i + 1) & mask;
    slots[i] = s;
  }
}

function emptySlots<S>(n: number): (S | undefined)[] {
  // Filled, not holey: V8 keeps the array's elements packed.
  return new Array<S | undefined>(n).fill(undefined);
}
