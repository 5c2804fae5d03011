/**
 * Ends streams when their caller's token expires, with one timer for all of
 * them instead of one per stream.
 *
 * Why: with auth on, every stream (an idle subscriber above all) would
 * otherwise hold a timer, its callback and a cleanup closure for as long as
 * it stays, about 0.9 KB of heap each (docs/perf-log.md, "Idle
 * subscribers"). Streams are kept in buckets of {@linkcode GRAIN_MS} by their
 * expiry, and one timer is armed for the earliest bucket, so a stream ends at
 * most one grain after its token (whose `exp` already has a leeway) expired.
 * Streams of one token share a bucket.
 *
 * @module
 */
import { ChatError } from "../rooms/errors.ts";

/** Bucket width: a stream ends at most this late. */
export const GRAIN_MS = 250;

const MAX_TIMEOUT_MS = 2 ** 31 - 1;

/** What the sweep ends. */
export interface Expiring {
  finish(err: unknown): void;
}

/** One stream in a bucket; disposing it takes it out (its cleanup). */
class Entry implements Disposable {
  constructor(
    readonly sweep: ExpirySweep,
    readonly at: number,
    readonly stream: Expiring,
  ) {}

  [Symbol.dispose](): void {
    this.sweep.remove(this);
  }
}

/** Streams by expiry; see the module doc. */
export class ExpirySweep {
  readonly #buckets = new Map<number, Set<Entry>>();
  #timer: ReturnType<typeof setTimeout> | undefined;
  #armedFor = Infinity;
  readonly #now: () => number;

  constructor(now: () => number = Date.now) {
    this.#now = now;
  }

  /** Streams waiting for their expiry. */
  get size(): number {
    let n = 0;
    for (const bucket of this.#buckets.values()) n += bucket.size;
    return n;
  }

  /**
   * Ends `stream` with UNAUTHENTICATED ("token expired") in `inMs`, within
   * a grain. Dispose the result when the stream ends first.
   */
  add(stream: Expiring, inMs: number): Disposable {
    const at = Math.ceil((this.#now() + inMs) / GRAIN_MS) * GRAIN_MS;
    const entry = new Entry(this, at, stream);
    let bucket = this.#buckets.get(at);
    if (bucket === undefined) {
      bucket = new Set();
      this.#buckets.set(at, bucket);
    }
    bucket.add(entry);
    if (at < this.#armedFor) this.#arm(at);
    return entry;
  }

  /** Forgets an entry; the timer stops with the last one. */
  remove(entry: Entry): void {
    const bucket = this.#buckets.get(entry.at);
    if (bucket === undefined || !bucket.delete(entry)) return;
    if (bucket.size > 0) return;
    this.#buckets.delete(entry.at);
    if (this.#buckets.size === 0) this.#disarm();
  }

  #arm(at: number): void {
    clearTimeout(this.#timer);
    this.#armedFor = at;
    // Past setTimeout's range (24.8 days) it wakes early and re-arms.
    const ms = Math.min(MAX_TIMEOUT_MS, Math.max(0, at - this.#now()));
    this.#timer = setTimeout(() => this.#fire(), ms);
  }

  #disarm(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#armedFor = Infinity;
  }

  #fire(): void {
    this.#timer = undefined;
    this.#armedFor = Infinity;
    const now = this.#now();
    const due: Set<Entry>[] = [];
    for (const [at, bucket] of this.#buckets) {
      if (at <= now) due.push(bucket);
    }
    for (const bucket of due) {
      // Each finish disposes its entry, which empties the bucket.
      for (const entry of [...bucket]) {
        entry.stream.finish(new ChatError("unauthenticated", "token expired"));
        this.remove(entry);
      }
    }
    let next = Infinity;
    for (const at of this.#buckets.keys()) if (at < next) next = at;
    if (next !== Infinity) this.#arm(next);
  }
}
