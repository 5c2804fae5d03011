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
 * The peer chooses the ids of its streams (any increasing odd number), so
 * an id's slot comes from a mixing hash (murmur3's 32-bit finalizer) of the
 * id with a random seed per table: ids a peer picks to share a slot under a
 * plain hash (1, 4097, 8193, ... under `id & mask`) would otherwise put
 * every open stream in one probe run, and every frame's lookup would walk
 * it. (A multiplicative hash with a random odd multiplier was not enough:
 * for about one multiplier in a thousand such ids still piled up.)
 *
 * @module
 */

const MIN_BITS = 3;
/**
 * A table shrinks only above this many slots: a connection whose calls come
 * and go in batches (all answered in one turn) would otherwise halve and
 * double its table at every batch.
 */
const SHRINK_ABOVE = 64;

/** Streams by id; see the module doc. */
export class StreamTable<S extends { readonly id: number }> {
  #slots: (S | undefined)[] = emptySlots(1 << MIN_BITS);
  /** 32 minus log2 of the capacity: the hash's top bits are the slot. */
  #shift = 32 - MIN_BITS;
  #mask = (1 << MIN_BITS) - 1;
  readonly #seed = (Math.random() * 0x1_0000_0000) | 0;
  #size = 0;

  /** Open streams. */
  get size(): number {
    return this.#size;
  }

  get(id: number): S | undefined {
    const slots = this.#slots;
    const mask = this.#mask;
    for (let i = this.#home(id);; i = (i + 1) & mask) {
      const s = slots[i];
      if (s === undefined || s.id === id) return s;
    }
  }

  /** Adds `s` under its id, or replaces the stream of that id. */
  set(s: S): void {
    const slots = this.#slots;
    const mask = this.#mask;
    let i = this.#home(s.id);
    for (;; i = (i + 1) & mask) {
      const at = slots[i];
      if (at === undefined) break;
      if (at.id === s.id) {
        slots[i] = s;
        return;
      }
    }
    this.#size++;
    // At most half full: probes stay short. Otherwise the empty slot that
    // ended the search is where `s` goes.
    if (2 * this.#size > slots.length) {
      this.#resize(2 * slots.length);
      this.#place(s);
    } else {
      slots[i] = s;
    }
  }

  /** Removes the stream of `id`; false if there was none. */
  delete(id: number): boolean {
    const slots = this.#slots;
    const mask = this.#mask;
    let i = this.#home(id);
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
      const home = this.#home(s.id);
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
    this.#setCapacity(1 << MIN_BITS);
    this.#size = 0;
  }

  /**
   * The longest distance of a stream from its home slot: how many slots a
   * lookup may have to read. For tests.
   */
  longestProbe(): number {
    const mask = this.#mask;
    let longest = 0;
    this.#slots.forEach((s, i) => {
      if (s !== undefined) {
        longest = Math.max(longest, (i - this.#home(s.id)) & mask);
      }
    });
    return longest;
  }

  #home(id: number): number {
    let h = id ^ this.#seed;
    h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
    h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
    return (h ^ (h >>> 16)) >>> this.#shift;
  }

  #setCapacity(capacity: number): void {
    this.#slots = emptySlots(capacity);
    this.#mask = capacity - 1;
    this.#shift = 32 - Math.log2(capacity);
  }

  #resize(capacity: number): void {
    const old = this.#slots;
    this.#setCapacity(capacity);
    for (const s of old) if (s !== undefined) this.#place(s);
  }

  #place(s: S): void {
    const slots = this.#slots;
    const mask = this.#mask;
    let i = this.#home(s.id);
    while (slots[i] !== undefined) i = (i + 1) & mask;
    slots[i] = s;
  }
}

function emptySlots<S>(n: number): (S | undefined)[] {
  // Filled, not holey: V8 keeps the array's elements packed.
  return new Array<S | undefined>(n).fill(undefined);
}
