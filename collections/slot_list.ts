/**
 * An unordered set of objects that each know their slot: add, remove and
 * iterate without a `Set`, for sets that gain and lose a member per call.
 *
 * Why not a `Set`: after a rehash V8 keeps a Set's old backing table linked
 * to the new one, members included (for live iterators). Once a long-lived
 * Set's table is in the old generation, every later table and the members
 * in it stay reachable from that dead old table until the next
 * mark-compact: a Set of calls in flight kept nearly every finished call
 * alive through the scavenges (docs/perf-log.md, "the promoted calls"). An
 * array that grows leaves its old backing store as plain garbage.
 *
 * Each member carries its `slot` (its index here, -1 when in no list); an
 * object may be in one SlotList at a time.
 *
 * @example
 * ```ts
 * class Call { slot = -1 }
 * const active = new SlotList<Call>();
 * const call = new Call();
 * active.add(call);
 * active.remove(call); // true
 * ```
 *
 * @module
 */

/** What a member of a {@linkcode SlotList} carries. */
export interface Slotted {
  /** The member's index in its list, -1 when in none. */
  slot: number;
}

/** See the module doc. */
export class SlotList<T extends Slotted> {
  #items: T[] = [];

  get size(): number {
    return this.#items.length;
  }

  /** Adds `item`, which must be in no list (its `slot` is -1). */
  add(item: T): void {
    if (item.slot !== -1) throw new Error("already in a SlotList");
    item.slot = this.#items.length;
    this.#items.push(item);
  }

  /** Removes `item` if it is here: the last member takes its slot. */
  remove(item: T): boolean {
    const items = this.#items;
    const i = item.slot;
    if (i < 0 || items[i] !== item) return false;
    const last = items.pop()!;
    if (last !== item) {
      items[i] = last;
      last.slot = i;
    }
    item.slot = -1;
    return true;
  }

  /** The members, as a new array (safe to change the list meanwhile). */
  values(): T[] {
    return this.#items.slice();
  }

  /** Removes every member. */
  clear(): void {
    for (const item of this.#items) item.slot = -1;
    this.#items = [];
  }
}
