/**
 * One room's live feed on one core: the messages that PUB/SUB brings, put
 * back into one run of consecutive offsets.
 *
 * PUB/SUB is fast but may lose messages (the subscription's connection
 * dropped, Redis restarted) and a core subscribes some time after a room's
 * first message. Every published batch carries its epoch and first offset,
 * so the feed knows the offset it expects next: a batch at that offset is
 * delivered; an older one (already delivered) is skipped; a later one means
 * a gap, which the feed fills from the room's stream (`fill`) before
 * delivering the batch. A batch of another epoch is read the same way: the
 * stream says whether the room's history was lost and restarted (the feed
 * follows the new epoch from its first offset) or the batch is from before
 * an epoch the feed already follows (dropped: it never goes back).
 *
 * Pure logic: the broker feeds it decoded batches and gives it a `fill`
 * that reads the stream; a unit test drives it with neither.
 *
 * @module
 */

/** A run of consecutive messages of one epoch. */
export interface Batch {
  readonly epoch: string;
  readonly first: number;
  readonly bodies: readonly Uint8Array[];
}

/** Reads messages with offset > `after` (up to `limit`) and the epoch they belong to. */
export type Fill = (after: number, limit: number) => Promise<Batch>;

/** Where the feed delivers: each message once, in offset order. */
export type Deliver = (epoch: string, offset: number, body: Uint8Array) => void;

/** Most messages one fill reads at a time. */
const FILL_LIMIT = 1000;
/**
 * Batches held while a read runs, at most: past it the oldest go (the read
 * after finds them in the stream), so a read that hangs bounds memory.
 */
const MAX_PENDING = 4096;
/** After a failed read with batches waiting: the next try, first and last. */
const RETRY_MS = 1000;
const RETRY_MAX_MS = 30_000;

export class RoomFeed {
  #epoch: string;
  #next: number;
  #deliver: Deliver;
  #fill: Fill;
  #pending: Batch[] = [];
  #filling = false;
  /** catchUp() was asked for while a read ran. */
  #again = false;
  /** The next try after a failed read, and how long it waits. */
  #retry: ReturnType<typeof setTimeout> | undefined;
  #retryMs = RETRY_MS;
  #closed = false;
  /** Batches `#hold` let go of from `#pending` (a read's `before` counts them). */
  #shed = 0;
  /** Messages recovered from the stream instead of PUB/SUB. */
  filled = 0;

  /** Starts after offset `last` of epoch `epoch` (the room's position). */
  constructor(epoch: string, last: number, deliver: Deliver, fill: Fill) {
    this.#epoch = epoch;
    this.#next = last + 1;
    this.#deliver = deliver;
    this.#fill = fill;
  }

  get epoch(): string {
    return this.#epoch;
  }

  /** Batches waiting for a read to settle them. */
  get held(): number {
    return this.#pending.length;
  }

  /** The last offset delivered (or the start position). */
  get last(): number {
    return this.#next - 1;
  }

  /** A batch from PUB/SUB. */
  push(batch: Batch): void {
    if (this.#closed) return;
    if (this.#filling) {
      this.#hold(batch);
      return;
    }
    // Another epoch: the room's history was lost and restarted (newer), or
    // a publication still on its way from before the epoch that a read
    // already took the feed to (older). Only a read of the stream tells;
    // epochs change seldom.
    if (batch.epoch !== this.#epoch || batch.first > this.#next) {
      this.#hold(batch);
      void this.catchUp();
      return;
    }
    this.#take(batch);
  }

  /**
   * Reads what was missed from the stream (after a reconnect, or for a
   * gap), then delivers the batches that waited. A failure leaves the feed
   * where it was; the next reconnect or batch tries again, or a timer
   * (1 s, doubling to 30 s) if batches wait.
   */
  async catchUp(): Promise<void> {
    if (this.#closed) return;
    // Asked during a read (a reconnect): that read may be older than what
    // was lost, so another follows it.
    if (this.#filling) {
      this.#again = true;
      return;
    }
    this.#filling = true;
    this.#again = false;
    let filled = false;
    // Batches that waited before the last read began (the rest came in
    // during it, which it may not have seen the messages before).
    let before = 0;
    try {
      while (!this.#closed) {
        before = this.#pending.length + this.#shed;
        const got = await this.#fill(this.last, FILL_LIMIT);
        if (got.epoch !== this.#epoch) {
          this.#epoch = got.epoch;
          this.#next = 1;
          continue;
        }
        const known = Math.max(0, this.#next - got.first);
        this.#take(got);
        this.filled += Math.max(0, got.bodies.length - known);
        if (got.bodies.length < FILL_LIMIT) break;
      }
      filled = true;
    } catch {
      // The broker is down: the batches wait, and the reconnect (or the
      // next batch) calls catchUp() again.
    } finally {
      this.#filling = false;
    }
    if (!filled) {
      // A reconnect during the failed read: its own read is still owed.
      if (this.#again) void this.catchUp();
      else if (this.#pending.length > 0 && this.#retry === undefined) {
        // Batches wait, and an error that leaves the connection up brings
        // no reconnect: try again later, less and less often.
        this.#retry = setTimeout(() => {
          this.#retry = undefined;
          void this.catchUp();
        }, this.#retryMs);
        this.#retryMs = Math.min(RETRY_MAX_MS, this.#retryMs * 2);
      }
      return;
    }
    this.#retryMs = RETRY_MS;
    const waiting = this.#pending;
    const shed = this.#shed;
    this.#pending = [];
    this.#shed = 0;
    for (let i = 0; i < waiting.length && !this.#closed; i++) {
      const b = waiting[i];
      const unread = b.epoch !== this.#epoch || b.first > this.#next;
      if (unread && i + shed >= before) {
        // In during the read: what comes before it, or its epoch, may be
        // newer than the read. Read again; it waits, with what follows.
        this.#pending.push(...waiting.slice(i));
        void this.catchUp();
        return;
      }
      // Another epoch than the stream's after a read that began with the
      // batch waiting: older (the room restarted after it), dropped. Pushed,
      // it would take the feed back to it and the next read forward again,
      // without end.
      if (b.epoch !== this.#epoch) continue;
      // A gap that the stream could not fill (trimmed by --history-size or
      // the TTL) must not stall the room: deliver what is there.
      if (b.first > this.#next) this.#next = b.first;
      this.push(b);
    }
    if (this.#again) void this.catchUp();
  }

  /** Stops delivering. */
  close(): void {
    this.#closed = true;
    clearTimeout(this.#retry);
    this.#retry = undefined;
    this.#pending = [];
  }

  #hold(batch: Batch): void {
    if (this.#pending.length >= MAX_PENDING) {
      this.#pending.shift();
      this.#shed++;
    }
    this.#pending.push(batch);
  }

  #take(batch: Batch): void {
    const skip = this.#next - batch.first;
    for (let i = Math.max(0, skip); i < batch.bodies.length; i++) {
      if (this.#closed) return;
      this.#deliver(this.#epoch, batch.first + i, batch.bodies[i]);
      this.#next = batch.first + i + 1;
    }
  }
}

const NL = 0x0a;
const text = new TextDecoder("utf-8", { ignoreBOM: true });

/** Decodes a PUB/SUB payload (see redis_scripts.ts). */
export function decodeBatch(payload: Uint8Array): Batch {
  const a = payload.indexOf(NL);
  const b = payload.indexOf(NL, a + 1);
  if (a < 0 || b < 0) throw new Error("broker: malformed publication");
  const epoch = text.decode(payload.subarray(0, a));
  const first = Number(text.decode(payload.subarray(a + 1, b)));
  const bodies: Uint8Array[] = [];
  const view = new DataView(
    payload.buffer,
    payload.byteOffset,
    payload.byteLength,
  );
  let at = b + 1;
  while (at < payload.length) {
    if (at + 4 > payload.length) {
      throw new Error("broker: malformed publication");
    }
    const len = view.getUint32(at);
    at += 4;
    if (at + len > payload.length) {
      throw new Error("broker: malformed publication");
    }
    bodies.push(payload.subarray(at, at + len));
    at += len;
  }
  if (!Number.isSafeInteger(first) || first < 1) {
    throw new Error("broker: malformed publication");
  }
  return { epoch, first, bodies };
}
