/**
 * One room subscriber: a bounded queue in front of a sink that may push back.
 *
 * The fast path writes straight to the sink. Once the sink reports that it is
 * full (`write()` returned false, i.e. grpc-js wants a `drain`), items wait in
 * a queue of fixed capacity (in items, and in bytes with `maxBytes`: items
 * are shared buffers, and 100 messages of 10 MiB each would pin 1 GiB per
 * stalled subscriber) until `resume()`. When that queue is full too, the
 * slow-consumer policy decides:
 *
 * - `"drop"`: the new item is dropped and counted; the subscriber stays.
 *   (A room member uses `offer()` instead and, rather than drop, catches
 *   up from history once the sink drains: see RoomRegistry.publish.)
 * - `"disconnect"`: the subscriber is closed and `onOverflow` is called once,
 *   so the transport can end its stream with RESOURCE_EXHAUSTED.
 *
 * Either way a slow subscriber never blocks the publisher or other
 * subscribers: `deliver()` is synchronous and O(1).
 */
import { checkCapacity, RingBuffer } from "./ring_buffer.ts";

/** Where delivered items go. `write()` returns false to ask for a pause. */
export interface Sink<T> {
  write(item: T): boolean;
}

export type SlowConsumerPolicy = "drop" | "disconnect";

export interface SubscriberOptions<T = unknown> {
  /** Items that may wait while the sink is paused. */
  capacity: number;
  /**
   * Bytes of items that may wait (undefined: no bound), as `bytes()`
   * counts them; a first item larger than this still waits alone.
   */
  maxBytes?: number;
  bytes?(item: T): number;
  policy: SlowConsumerPolicy;
  /** Called once, on the first overflow under the "disconnect" policy. */
  onOverflow?: () => void;
  /** Called for every dropped item under the "drop" policy. */
  onDrop?: () => void;
  /** Called when the sink drained and the queue is empty again. */
  onIdle?: () => void;
}

export class Subscriber<T> {
  #sink: Sink<T>;
  /** Created on the first item that has to wait: most never do. */
  #queue: RingBuffer<T> | undefined;
  /** Bytes of the queued items (with `maxBytes`). */
  #queuedBytes = 0;
  #options: SubscriberOptions<T>;
  #paused = false;
  #closed = false;
  #dropped = 0;

  constructor(sink: Sink<T>, options: SubscriberOptions<T>) {
    this.#sink = sink;
    this.#options = options;
    checkCapacity(options.capacity);
  }

  /** Items dropped because the queue was full. */
  get dropped(): number {
    return this.#dropped;
  }

  /** Items waiting for the sink to drain. */
  get queued(): number {
    return this.#queue?.size ?? 0;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** True while the sink pushes back (items queue). */
  get paused(): boolean {
    return this.#paused;
  }

  /**
   * Items lost before they reached this subscriber (history trimmed while
   * it caught up): the policy applies as for a full queue.
   */
  lost(count: number): void {
    if (this.#closed || count <= 0) return;
    if (this.#options.policy === "drop") {
      this.#dropped += count;
      for (let i = 0; i < count; i++) this.#options.onDrop?.();
      return;
    }
    this.close();
    this.#options.onOverflow?.();
  }

  /**
   * Hands an item to the sink now, or queues it. Returns false, and does
   * nothing else, when the queue has no room for it under the "drop"
   * policy: a room member then stops being live and catches up from history
   * once the sink drains (RoomRegistry.publish, ChatHub.idle). Under
   * "disconnect" a full queue closes the subscriber (and returns true:
   * nothing is left to do with the item).
   */
  offer(item: T): boolean {
    if (this.#closed) return true;
    if (!this.#paused) {
      if (!this.#sink.write(item)) this.#paused = true;
      return true;
    }
    const queue = this.#queue ??= new RingBuffer(this.#options.capacity);
    const maxBytes = this.#options.maxBytes;
    if (maxBytes === undefined) {
      if (queue.push(item)) return true;
    } else {
      const n = this.#options.bytes!(item);
      if (
        (queue.size === 0 || this.#queuedBytes + n <= maxBytes) &&
        queue.push(item)
      ) {
        this.#queuedBytes += n;
        return true;
      }
    }
    if (this.#options.policy === "drop") return false;
    this.close();
    this.#options.onOverflow?.();
    return true;
  }

  /** Hands an item to the sink now, or queues it, or applies the policy. */
  deliver(item: T): void {
    if (!this.offer(item)) {
      this.#dropped++;
      this.#options.onDrop?.();
    }
  }

  /** The sink drained: flush queued items until it pushes back again. */
  resume(): void {
    this.#paused = false;
    const queue = this.#queue;
    while (!this.#closed && queue !== undefined && queue.size > 0) {
      const item = queue.shift() as T;
      if (this.#options.maxBytes !== undefined) {
        this.#queuedBytes -= this.#options.bytes!(item);
      }
      if (!this.#sink.write(item)) {
        this.#paused = true;
        return;
      }
    }
    if (!this.#closed) this.#options.onIdle?.();
  }

  /** Stops deliveries and releases queued items. Idempotent. */
  close(): void {
    this.#closed = true;
    this.#queue = undefined;
    this.#queuedBytes = 0;
  }
}
