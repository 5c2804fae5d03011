/**
 * The chat's lines on their way to the room, in order, until each is sent.
 *
 * Each line gets an idempotency key when typed, sent with every try of it:
 * the server stores it once however many tries reach it (within its
 * idempotency window), so a try whose answer was lost may be sent again.
 *
 * A line that cannot be sent now (disconnected, `UNAVAILABLE`,
 * `DEADLINE_EXCEEDED`) is reported once ("not sent yet ... will retry") and
 * retried with backoff and at every `retryNow()` (the session calls it after a
 * reconnection); one cut off with INTERNAL or UNKNOWN (a core killed
 * mid-call: it may have been stored) is retried the same way, its key
 * keeping it from showing twice, up to {@linkcode UNCONFIRMED_TRIES} times (a
 * server's own INTERNAL would come back for ever), then reported as not
 * confirmed and dropped; one refused for good (a bad token, a bad message)
 * is reported as not sent and dropped. Nothing typed disappears without a
 * line saying so: what is still queued at the end comes back from `close()`.
 *
 * @module
 */
import { status as Status } from "@grpc/grpc-js";
import { formatError } from "./format.ts";

/** Codes after which the same send may succeed later. */
const RETRYABLE = new Set<number>([
  Status.UNAVAILABLE,
  Status.DEADLINE_EXCEEDED,
  Status.CANCELLED,
]);

/**
 * Codes that may come from a call cut off after the server took it (grpc-js
 * reports a connection that broke mid-call as INTERNAL, e.g. `write EPIPE`,
 * when a core is killed): retried a few times only (a server's own INTERNAL
 * would come back for ever), and not called "not sent" when given up.
 */
const MAYBE_STORED = new Set<number>([Status.INTERNAL, Status.UNKNOWN]);

/** Tries of a line that keep ending INTERNAL or UNKNOWN, at most. */
export const UNCONFIRMED_TRIES = 4;

/** How the outbox sends and reports. */
export interface OutboxOptions {
  /**
   * Sends one line with its idempotency key (the same for every try);
   * resolves once the server took it.
   */
  send(content: string, key: string): Promise<void>;
  /** Whether sending is worth trying now (the room is connected). */
  canSend(): boolean;
  minRetryMs: number;
  maxRetryMs: number;
  /** A line for the user about a line of theirs. */
  warn(text: string): void;
  note(text: string): void;
  /** Called whenever the outbox may have become empty. */
  changed(): void;
}

/** A line and its idempotency key. */
export interface Line {
  readonly content: string;
  readonly key: string;
}

interface Item {
  content: string;
  key: string;
  warned: boolean;
  /** Tries that ended INTERNAL or UNKNOWN. */
  unconfirmed: number;
}

const item = (
  content: string,
  warned: boolean,
  key: string = crypto.randomUUID(),
): Item => ({ content, key, warned, unconfirmed: 0 });

/** A FIFO of lines with retry. */
export class Outbox {
  #o: OutboxOptions;
  #items: Item[] = [];
  #sending = false;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #delay: number;
  #closed = false;
  /** Lines refused for good. */
  refused = 0;

  constructor(options: OutboxOptions) {
    this.#o = options;
    this.#delay = options.minRetryMs;
  }

  /** Nothing queued and nothing on its way. */
  get idle(): boolean {
    return this.#items.length === 0 && !this.#sending;
  }

  /** Queues a typed line. */
  push(content: string): void {
    this.#items.push(item(content, false));
    this.#drain();
  }

  /**
   * Puts lines back at the front (sent, but not confirmed before a break),
   * with the keys they were sent with: stored already, they are not again.
   */
  requeue(lines: readonly Line[]): void {
    this.#items.unshift(
      ...lines.map(({ content, key }) => item(content, true, key)),
    );
  }

  /** Retries now with a fresh backoff (after a reconnection). */
  retryNow(): void {
    this.#delay = this.#o.minRetryMs;
    this.#drain();
  }

  /** Stops retrying; returns the lines never sent. */
  close(): string[] {
    this.#closed = true;
    clearTimeout(this.#timer);
    return this.#items.splice(0).map((item) => item.content);
  }

  async #drain(): Promise<void> {
    if (this.#sending || this.#closed) return;
    this.#sending = true;
    clearTimeout(this.#timer);
    while (this.#items.length > 0 && !this.#closed) {
      const item = this.#items[0];
      try {
        if (!this.#o.canSend()) {
          throw { code: Status.UNAVAILABLE, details: "disconnected" };
        }
        await this.#o.send(item.content, item.key);
        this.#items.shift();
        this.#delay = this.#o.minRetryMs;
        if (item.warned) this.#o.note(`-- sent: "${item.content}"`);
      } catch (err) {
        const code = (err as { code?: number }).code ?? -1;
        const again = RETRYABLE.has(code) ||
          (MAYBE_STORED.has(code) && ++item.unconfirmed < UNCONFIRMED_TRIES);
        if (!again) {
          this.#items.shift();
          this.refused++;
          this.#o.warn(
            MAYBE_STORED.has(code)
              ? `not confirmed: "${item.content}" (${
                formatError(err)
              }); it may have been stored: the room's history shows it if so`
              : `not sent: "${item.content}" (${formatError(err)})`,
          );
          continue;
        }
        if (!item.warned) {
          item.warned = true;
          this.#o.warn(
            MAYBE_STORED.has(code)
              ? `not confirmed yet: "${item.content}" (${
                formatError(err)
              }); will retry (it shows once if it was stored)`
              : `not sent yet: "${item.content}" (${
                formatError(err)
              }); will retry`,
          );
        }
        this.#timer = setTimeout(() => this.#drain(), this.#delay);
        this.#delay = Math.min(this.#delay * 2, this.#o.maxRetryMs);
        break;
      }
    }
    this.#sending = false;
    this.#o.changed();
  }
}
