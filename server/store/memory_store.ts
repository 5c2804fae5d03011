/**
 * History kept in this process's memory (`--store memory`): lost on a
 * restart, after which every room starts again with a new epoch.
 *
 * Each room keeps its last `size` messages in an array with a moving start
 * (trimming is O(1) amortized); messages older than the TTL are skipped by
 * reads and removed by the next append or sweep.
 */
import {
  type Appended,
  type AppendEntry,
  type HistoryLimits,
  type HistoryStore,
  newEpoch,
  type RoomPosition,
  type StoredMessage,
  type StoreStatus,
} from "../rooms/history_store.ts";
import { CommitStatus } from "./commit_status.ts";

interface Kept {
  readonly offset: number;
  readonly body: Uint8Array;
  readonly timeMs: number;
}

class MemoryRoom {
  readonly epoch = newEpoch();
  last = 0;
  lastMs: number;
  #items: Kept[] = [];
  #start = 0;

  constructor(nowMs: number) {
    this.lastMs = nowMs;
  }

  get size(): number {
    return this.#items.length - this.#start;
  }

  push(item: Kept, limits: HistoryLimits): void {
    this.#items.push(item);
    this.trim(limits, item.timeMs);
  }

  /** Drops what is over the size limit or older than the TTL. */
  trim(limits: HistoryLimits, nowMs: number): void {
    const items = this.#items;
    let start = Math.max(this.#start, items.length - limits.size);
    if (limits.ttlMs > 0) {
      const cutoff = nowMs - limits.ttlMs;
      while (start < items.length && items[start].timeMs < cutoff) start++;
    }
    this.#start = start;
    if (start > 64 && start * 2 > items.length) {
      this.#items = items.slice(start);
      this.#start = 0;
    }
  }

  read(after: number, limit: number, cutoff: number): StoredMessage[] {
    const items = this.#items;
    const first = this.#start;
    if (first >= items.length) return [];
    let i = Math.max(first, first + after + 1 - items[first].offset);
    while (i < items.length && items[i].timeMs < cutoff) i++;
    const out: StoredMessage[] = [];
    for (; i < items.length && out.length < limit; i++) {
      out.push({ offset: items[i].offset, body: items[i].body });
    }
    return out;
  }
}

/** Options of {@linkcode createMemoryStore}. */
export interface MemoryStoreOptions extends HistoryLimits {
  /** The clock (tests pass their own). */
  now?: () => number;
}

export function createMemoryStore(options: MemoryStoreOptions): HistoryStore {
  const limits: HistoryLimits = { size: options.size, ttlMs: options.ttlMs };
  const now = options.now ?? Date.now;
  const rooms = new Map<string, MemoryRoom>();
  const status = new CommitStatus();
  let lastMessageId = 0;

  const room = (name: string, nowMs: number): MemoryRoom => {
    let r = rooms.get(name);
    if (r === undefined) {
      r = new MemoryRoom(nowMs);
      rooms.set(name, r);
    }
    return r;
  };

  // Rooms that went quiet for longer than the TTL are forgotten (their next
  // message starts a new epoch), so the map does not keep every name used.
  const sweep = () => {
    const nowMs = now();
    for (const [name, r] of rooms) {
      r.trim(limits, nowMs);
      if (r.size === 0 && nowMs - r.lastMs > limits.ttlMs) rooms.delete(name);
    }
  };
  const timer = sweepEvery(limits.ttlMs, sweep);

  const store: HistoryStore = {
    kind: "memory",
    get lastMessageId() {
      return lastMessageId;
    },
    append(entries: readonly AppendEntry[], lastId: number) {
      const t0 = performance.now();
      const out: Appended[] = new Array(entries.length);
      for (let i = 0; i < entries.length; i++) {
        const e = entries[i];
        const r = room(e.room, e.timeMs);
        const offset = ++r.last;
        r.lastMs = e.timeMs;
        // A copy: the body may be a view into a larger buffer (a received
        // chunk, an allocation pool) that it must not keep alive.
        r.push({ offset, body: e.body.slice(), timeMs: e.timeMs }, limits);
        out[i] = { offset, epoch: r.epoch };
      }
      lastMessageId = Math.max(lastMessageId, lastId);
      const ms = performance.now() - t0;
      status.ok(ms);
      store.onCommit?.(ms, true);
      return Promise.resolve(out);
    },
    position(name: string): Promise<RoomPosition> {
      const r = room(name, now());
      return Promise.resolve({ epoch: r.epoch, offset: r.last });
    },
    read(name: string, after: number, limit: number) {
      const r = rooms.get(name);
      const cutoff = limits.ttlMs > 0 ? now() - limits.ttlMs : -Infinity;
      return Promise.resolve(r ? r.read(after, limit, cutoff) : []);
    },
    status: (): StoreStatus => status.snapshot(),
    close() {
      clearInterval(timer);
    },
  };
  return store;
}

/**
 * Runs `sweep` (expired messages and rooms) every tenth of the TTL, 1-60 s;
 * nothing without a TTL. Returns the timer to clear on close.
 */
export function sweepEvery(
  ttlMs: number,
  sweep: () => void,
): ReturnType<typeof setInterval> | undefined {
  if (ttlMs <= 0) return undefined;
  return setInterval(sweep, Math.min(60_000, Math.max(1000, ttlMs / 10)));
}
