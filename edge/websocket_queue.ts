/**
 * The bridge's bounded queue of request messages waiting for the core.
 *
 * A browser WebSocket has no receive-side flow control, so a client can send
 * faster than the core reads. The queue counts the bytes it holds and refuses
 * a push past its bound (`push()` returns false); the bridge then ends the call
 * with RESOURCE_EXHAUSTED instead of buffering without limit.
 *
 * @module
 */

/** A single-consumer async iterable of request messages. */
export class RequestQueue implements AsyncIterable<Uint8Array> {
  readonly #maxBytes: number;
  readonly #items: Uint8Array[] = [];
  #bytes = 0;
  #closed = false;
  #wake: (() => void) | undefined;

  constructor(maxBytes: number) {
    this.#maxBytes = maxBytes;
  }

  /** True after `close()`: no more pushes are accepted. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Queues a message; false if it would exceed the byte bound (nothing queued). */
  push(message: Uint8Array): boolean {
    if (this.#closed) return false;
    if (this.#bytes + message.byteLength > this.#maxBytes) return false;
    this.#items.push(message);
    this.#bytes += message.byteLength;
    this.#wake?.();
    return true;
  }

  /** Ends the stream (half-close); queued messages are still delivered. */
  close(): void {
    this.#closed = true;
    this.#wake?.();
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<Uint8Array> {
    while (true) {
      const next = this.#items.shift();
      if (next) {
        this.#bytes -= next.byteLength;
        yield next;
        continue;
      }
      if (this.#closed) return;
      await new Promise<void>((resolve) => this.#wake = resolve);
      this.#wake = undefined;
    }
  }
}
