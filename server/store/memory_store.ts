/**
 * History kept in this process's memory (`--store memory`): lost on a
 * restart, after which every room starts again with a new epoch.
 *
 * The rooms are {@linkcode RetainedRoom}s (retained_room.ts), as in the
 * log store, without the log.
 */
import {
  type Appended,
  type AppendEntry,
  type HistoryLimits,
  type HistoryStore,
  newEpoch,
  type RoomPosition,
  type StoreStatus,
} from "../rooms/history_store.ts";
import { CommitStatus } from "./commit_status.ts";
import {
  expiredRooms,
  readRetained,
  RetainedBudget,
  RetainedRoom,
  roomsToForget,
  sweepEvery,
} from "./retained_room.ts";

/** Options of {@linkcode createMemoryStore}. */
export interface MemoryStoreOptions extends HistoryLimits {
  /** Body bytes retained by all rooms together (default: no bound). */
  maxBytes?: number;
  /** The clock (tests pass their own). */
  now?: () => number;
}

/** A room of the memory store: its name, for the room bound. */
class MemoryRoom extends RetainedRoom {
  constructor(
    readonly name: string,
    epoch: string,
    nowMs: number,
    budget: RetainedBudget,
  ) {
    super(epoch, nowMs, budget);
  }
}

export function createMemoryStore(options: MemoryStoreOptions): HistoryStore {
  const limits: HistoryLimits = {
    size: options.size,
    ttlMs: options.ttlMs,
    bytes: options.bytes,
  };
  const maxRooms = options.maxRooms ?? Infinity;
  const budget = new RetainedBudget(options.maxBytes);
  const now = options.now ?? Date.now;
  const rooms = new Map<string, MemoryRoom>();
  const status = new CommitStatus();
  let lastMessageId = 0;

  const room = (name: string, nowMs: number): RetainedRoom => {
    let r = rooms.get(name);
    if (r === undefined) {
      r = new MemoryRoom(name, newEpoch(), nowMs, budget);
      rooms.set(name, r);
    }
    return r;
  };

  /** Lets go of `r` (its epoch with it: its next message starts anew). */
  const forget = (r: MemoryRoom) => {
    r.release();
    rooms.delete(r.name);
  };

  // Rooms that went quiet for longer than the TTL are forgotten (their next
  // message starts a new epoch), so the map does not keep every name used.
  const sweep = () => {
    for (const name of expiredRooms(rooms, limits, now())) {
      forget(rooms.get(name)!);
    }
  };

  const timer = sweepEvery(limits.ttlMs, sweep);

  /** Past `maxRooms`: the least recently written rooms are forgotten. */
  const bound = (keep?: string) => {
    for (
      const r of roomsToForget<MemoryRoom>(budget, rooms.size, maxRooms, keep)
    ) {
      forget(r);
    }
  };

  const store: HistoryStore = {
    kind: "memory",
    get lastMessageId() {
      return lastMessageId;
    },
    append(entries: readonly AppendEntry[], lastId: number) {
      return Promise.resolve(store.appendSync!(entries, lastId));
    },
    appendSync(entries: readonly AppendEntry[], lastId: number) {
      const t0 = performance.now();
      const out: Appended[] = new Array(entries.length);
      for (let i = 0; i < entries.length; i++) {
        const e = entries[i];
        const r = room(e.room, e.timeMs);
        const offset = ++r.last;
        r.lastMs = e.timeMs;
        r.push(offset, e.body, e.timeMs, limits);
        out[i] = { offset, epoch: r.epoch };
      }
      lastMessageId = Math.max(lastMessageId, lastId);
      if (rooms.size > maxRooms) bound();
      const ms = performance.now() - t0;
      status.ok(ms);
      store.onCommit?.(ms, true);
      return out;
    },
    position(name: string): Promise<RoomPosition> {
      const r = room(name, now());
      if (rooms.size > maxRooms) bound(name);
      return Promise.resolve({ epoch: r.epoch, offset: r.last });
    },
    release(name: string) {
      const r = rooms.get(name);
      if (r === undefined || r.last !== 0) return;
      forget(r);
    },
    read: (name: string, after: number, limit: number, epoch?: string) =>
      readRetained(rooms, name, after, limit, limits, now(), epoch),
    status: (): StoreStatus => status.snapshot(),
    close() {
      clearInterval(timer);
    },
  };
  return store;
}
