/**
 * A single-consumer async queue of response messages with a high-water mark.
 *
 * The HTTP/2 stream pushes; the handler pulls at the browser's pace. Above
 * the mark (a count of messages, or of bytes: 16 messages of the largest
 * size would be 160 MiB for one stalled browser) the producer is paused
 * (stream.pause()), so HTTP/2 flow control pushes back on the core instead
 * of the edge buffering without bound.
 *
 * @module
 */

/** Callbacks a {@linkcode MessageQueue} uses to steer its producer. */
export interface MessageQueueOptions {
  highWaterMark: number;
  /** Bytes queued that pause the producer too (one message always fits). */
  highWaterBytes: number;
  pause(): void;
  resume(): void;
  /** The consumer stopped early (break / return()). */
  cancel(): void;
}

/** An async-iterable queue, iterated once. */
export class MessageQueue implements AsyncIterable<Uint8Array> {
  readonly #opts: MessageQueueOptions;
  #items: Uint8Array[] = [];
  #head = 0;
  #bytes = 0;
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
    this.#bytes += message.byteLength;
    if (
      !this.#paused && (this.#size() >= this.#opts.highWaterMark ||
        this.#bytes >= this.#opts.highWaterBytes)
    ) {
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

  /**
   * Every message queued now (at least one), waiting for the next when the
   * queue is empty; undefined once it ended and is drained. Lets a consumer
   * write what piled up as one chunk instead of one write per message.
   * Use either this or the iterator, not both.
   */
  nextBatch(): Promise<Uint8Array[] | undefined> {
    if (this.#size() > 0) return Promise.resolve(this.#takeAll());
    if (this.#ended) return Promise.resolve(undefined);
    return new Promise((resolve) => {
      this.#wake = () =>
        resolve(this.#size() > 0 ? this.#takeAll() : undefined);
    });
  }

  #takeAll(): Uint8Array[] {
    const all = this.#head === 0 ? this.#items : this.#items.slice(this.#head);
    this.#items = [];
    this.#head = 0;
    this.#bytes = 0;
    if (this.#paused) {
      this.#paused = false;
      this.#opts.resume();
    }
    return all;
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<Uint8Array> {
    let finished = false;
    try {
      while (true) {
        if (this.#head < this.#items.length) {
          const item = this.#items[this.#head++];
          this.#bytes -= item.byteLength;
          if (this.#head > 64 && this.#head * 2 > this.#items.length) {
            this.#items.splice(0, this.#head);
            this.#head = 0;
          }
          if (
            this.#paused && this.#size() < this.#opts.highWaterMark / 2 &&
            this.#bytes < this.#opts.highWaterBytes / 2
          ) {
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
