/**
 * A fixed-capacity FIFO with O(1) push and shift.
 *
 * Subscriber queues use it instead of `Array.prototype.shift()`, which is
 * O(n) and reallocates under steady fan-out load. The slots are allocated on
 * the first push: most subscribers never queue anything (their stream keeps
 * up), and 10,000 idle ones would otherwise hold 10,000 empty arrays.
 */
export class RingBuffer<T> {
  #items: (T | undefined)[] | undefined;
  #head = 0;
  #size = 0;

  constructor(readonly capacity: number) {
    checkCapacity(capacity);
  }

  get size(): number {
    return this.#size;
  }

  /** Appends an item; returns false (and keeps nothing) when full. */
  push(item: T): boolean {
    if (this.#size === this.capacity) return false;
    this.#items ??= new Array(this.capacity);
    this.#items[(this.#head + this.#size) % this.capacity] = item;
    this.#size++;
    return true;
  }

  /** Removes and returns the oldest item, or undefined when empty. */
  shift(): T | undefined {
    if (this.#size === 0 || !this.#items) return undefined;
    const item = this.#items[this.#head];
    this.#items[this.#head] = undefined;
    this.#head = (this.#head + 1) % this.capacity;
    this.#size--;
    return item;
  }

  /** Drops every item so that nothing stays referenced. */
  clear(): void {
    this.#items = undefined;
    this.#head = 0;
    this.#size = 0;
  }
}

/** Throws a RangeError unless `capacity` is a positive integer. */
export function checkCapacity(capacity: number): void {
  if (!Number.isInteger(capacity) || capacity < 1) {
    throw new RangeError(
      `capacity must be a positive integer, got ${capacity}`,
    );
  }
}
