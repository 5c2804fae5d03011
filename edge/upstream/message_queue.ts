/**
 * A single-consumer async queue of response messages with a high-water mark.
 *
 * The HTTP/2 stream pushes; the handler pulls at the browser's pace. Above
 * the mark the producer is paused (stream.pause()), so HTTP/2 flow control
 * pushes back on the core instead of the edge buffering without bound.
 *
 * @module
 */

/** Callbacks a {@linkcode MessageQueue} uses to steer its producer. */
export interface MessageQueueOptions {
  highWaterMark: number;
  pause(): void;
  resume(): void;
  /** The consumer stopped early (break / return()). */
  cancel(): void;
}

/** An async-iterable queue, iterated once. */
export class MessageQueue implements AsyncIterable<Uint8Array> {
  readonly #opts: MessageQueueOptions;
  readonly #items: Uint8Array[] = [];
  #head = 0;
  #ended = false;
  #paused = false;
  #wake: (() => void) | undefined;

  constructor(options: MessageQueueOptions) {
    this.#opts = options;
  }

  /** Adds a message; pauses the producer at the high-water mark. */
  push(message: Uint8Array): void {
    if (this.#ended) return;
    this.#items.push(message);
    if (!this.#paused && this.#size() >= this.#opts.highWaterMark) {
      this.#paused = true;
      this.#opts.pause();
    }
    this.#signal();
  }

  /** No more messages; the consumer drains what is queued, then stops. */
  end(): void {
    this.#ended = true;
    this.#signal();
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<Uint8Array> {
    let finished = false;
    try {
      while (true) {
        if (this.#head < this.#items.length) {
          const item = this.#items[this.#head++];
          if (this.#head > 64 && this.#head * 2 > this.#items.length) {
            this.#items.splice(0, this.#head);
            this.#head = 0;
          }
          if (this.#paused && this.#size() < this.#opts.highWaterMark / 2) {
            this.#paused = false;
            this.#opts.resume();
          }
          yield item;
          continue;
        }
        if (this.#ended) {
          finished = true;
          return;
        }
        await new Promise<void>((resolve) => this.#wake = resolve);
      }
    } finally {
      if (!finished) this.#opts.cancel();
    }
  }

  #size(): number {
    return this.#items.length - this.#head;
  }

  #signal(): void {
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }
}
