/**
 * Durable history in an append-only log (`--store log`, the default): the
 * memory store's rooms (retained_room.ts) plus a log on disk to rebuild them
 * from after a restart.
 *
 * Each `append()` batch is one frame (log_format.ts: length, CRC-32, the
 * records) written with one `write` system call; the publishes are
 * acknowledged once it returned. That is SQLite's WAL with
 * `synchronous = NORMAL`'s durability class: a committed message is in the
 * OS's page cache and survives the process being killed (`kill -9`, a
 * crash); a power loss may lose the last commits (never one in the middle:
 * start-up cuts off only a torn end). About 2 µs of system call and a copy
 * per commit, against SQLite's ~50 µs (docs/perf-log.md, 2026-12-06).
 *
 * Reads never touch the disk: every retained message is also in memory,
 * bounded by `--history-size` and `--history-bytes` per room and
 * `--history-max-bytes` in all (retained_room.ts; rooms silent for longer
 * than `--history-ttl` are forgotten). The log is
 * compacted (log_compaction.ts) once it is larger than
 * max(64 MiB, 2 × the last snapshot): start-up reads at most about three
 * times the retained bytes (docs/perf-log.md, 2026-12-06), and disk stays
 * within a few times them.
 *
 * One process per data directory (`history.lock`, log_files.ts). A write
 * that fails (disk full, read-only, I/O error) rejects the batch, cuts the
 * segment back to its last good end and leaves the counters as they were;
 * the next append tries again.
 */
import { join } from "node:path";
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
  type CompactionStep,
  type Rolled,
  writeSnapshot,
} from "./log_compaction.ts";
import { lockDir, makeDataDir, segmentName } from "./log_files.ts";
import { FrameBuilder } from "./log_format.ts";
import {
  LogRoom,
  recover,
  type Recovered,
  segmentHead,
  writeAll,
} from "./log_recovery.ts";
import {
  expiredRooms,
  readRetained,
  RetainedBudget,
  roomsToForget,
  sweepEvery,
} from "./retained_room.ts";

/** Options of {@linkcode openLogStore}. */
export interface LogStoreOptions extends HistoryLimits {
  /** The directory of the log (created if missing). */
  dataDir: string;
  /** Body bytes retained by all rooms together (default: no bound). */
  maxBytes?: number;
  now?: () => number;
  /** The smallest log that is compacted, in bytes (default 64 MiB). */
  compactBytes?: number;
  /** The largest frame payload (default the u32 limit; tests pass less). */
  maxFrameBytes?: number;
  /** Hears each step of a compaction (the crash tests stop there). */
  onCompaction?: (step: CompactionStep) => void;
  /** Where warnings go (a torn end cut off, a failed compaction); stderr. */
  warn?: (message: string) => void;
}

/**
 * The log store. Its commit is synchronous: `append()` is `appendSync()`
 * in a settled promise. CommitQueue calls `appendSync()` at the turn end,
 * so a publish is answered in the turn that received it (docs/perf-log.md,
 * "the commit in the turn").
 */
export interface LogStore extends HistoryStore {
  /** `append()`'s commit, returning at once or throwing when nothing was stored. */
  appendSync(
    entries: readonly AppendEntry[],
    lastMessageId: number,
  ): Appended[];
  /** Resolves once no compaction runs (tests). */
  idle(): Promise<void>;
}

const DEFAULT_COMPACT_BYTES = 64 * 1024 * 1024;
/** Room numbers are u32 in the records. */
const MAX_ROOM_ID = 0xffff_ffff;

/** The size of a segment's head frame (a segment with nothing else). */
const HEAD_BYTES = segmentHead(1, 0, 1).length;

/**
 * Creates the segment file `path`. One left there by a roll whose clean-up
 * failed (empty, or no longer than a head: no records) is replaced; one with
 * more in it is not ours to overwrite (the roll fails, naming it).
 */
function createSegment(path: string): Deno.FsFile {
  try {
    return Deno.openSync(path, { append: true, createNew: true });
  } catch (err) {
    if (!(err instanceof Deno.errors.AlreadyExists)) throw err;
    const size = Deno.statSync(path).size;
    if (size > HEAD_BYTES) {
      throw new Error(`${path} exists and holds ${size} bytes`, { cause: err });
    }
    Deno.removeSync(path);
    return Deno.openSync(path, { append: true, createNew: true });
  }
}

/** How long a failed compaction waits before the next try. */
const COMPACT_RETRY_MS = 10_000;

/**
 * Opens (or creates) the log in `dataDir`. Throws StoreOpenError naming the
 * file when the directory is in use, a file is damaged or unreadable.
 */
export function openLogStore(options: LogStoreOptions): LogStore {
  const limits: HistoryLimits = {
    size: options.size,
    ttlMs: options.ttlMs,
    bytes: options.bytes,
  };
  const maxRooms = options.maxRooms ?? Infinity;
  const budget = new RetainedBudget(options.maxBytes);
  const now = options.now ?? Date.now;
  const warn = options.warn ?? ((m: string) => console.error(m));
  const dir = options.dataDir;
  makeDataDir(dir);
  const lock = lockDir(dir);
  let state: Recovered;
  try {
    state = recover(dir, limits, budget, warn);
  } catch (err) {
    lock.close();
    throw err;
  }
  const { rooms, byId } = state;
  let { lastMessageId, nextRoomId, segment, seq, snapshotBytes } = state;
  /** Where the segment's last complete frame ends. */
  let written = state.size;
  /** A failed write left bytes past `written` that could not be cut off yet. */
  let dirty = false;
  let closed = false;
  let compacting: Promise<void> | undefined;
  let compactAfter = 0;
  /** An early sync of the segment as it nears the roll (started once each). */
  let presync: Promise<void> | undefined;
  let presynced = false;
  const frame = new FrameBuilder(undefined, options.maxFrameBytes);
  const status = new CommitStatus();
  const compactBytes = options.compactBytes ?? DEFAULT_COMPACT_BYTES;

  /** Writes the frame built in `frame`, or cuts the segment back and throws. */
  const commit = (): void => {
    if (closed) throw new Error("history store closed");
    if (dirty) {
      segment.truncateSync(written);
      dirty = false;
    }
    const bytes = frame.finish();
    try {
      writeAll(segment, bytes);
    } catch (err) {
      try {
        segment.truncateSync(written);
      } catch {
        dirty = true;
      }
      throw err;
    }
    written += bytes.length;
  };

  /**
   * Room numbers whose drop is in the log, for new rooms to take again: a
   * u32 in the records, they must not run out however many rooms come and
   * go (replay forgets a number at its drop, before it is taken again).
   */
  const freeIds: number[] = [];
  /** Numbers taken from `freeIds` by the batch being encoded. */
  const reused: number[] = [];

  /** Gives `r` a number and writes its record into the frame being built. */
  const logRoom = (r: LogRoom) => {
    const id = freeIds.pop();
    if (id !== undefined) reused.push(id);
    else if (nextRoomId > MAX_ROOM_ID) {
      throw new Error(`the log has no room number left for ${r.name}`);
    }
    r.id = id ?? nextRoomId++;
    byId.set(r.id, r);
    frame.room(r.id, 0, r.lastMs, r.epoch, r.name);
  };

  /**
   * A room asked for: kept in memory only until its first message, so that
   * subscribing to rooms nobody writes in writes nothing (release()).
   */
  const openRoom = (name: string, nowMs: number): LogRoom => {
    const r = new LogRoom(0, name, newEpoch(), nowMs, budget);
    rooms.set(name, r);
    return r;
  };

  /** Forgets `r`; its number is free again once its drop is in the log. */
  const forget = (r: LogRoom, dropLogged: boolean) => {
    r.release();
    rooms.delete(r.name);
    if (r.id === 0) return;
    byId.delete(r.id);
    if (dropLogged) freeIds.push(r.id);
  };

  // Scratch arrays of appendSync, reused: no allocations per batch for them.
  const of: LogRoom[] = [];
  const touched: LogRoom[] = [];
  const created: LogRoom[] = [];
  const logged: LogRoom[] = [];

  const appendSync = (entries: readonly AppendEntry[], lastId: number) => {
    const t0 = performance.now();
    const n = entries.length;
    const out: Appended[] = new Array(n);
    const idBefore = nextRoomId;
    frame.reset();
    try {
      for (let i = 0; i < n; i++) {
        const e = entries[i];
        let r = rooms.get(e.room);
        if (r === undefined) {
          r = openRoom(e.room, e.timeMs);
          created.push(r);
          logRoom(r);
        } else if (r.id === 0) {
          logRoom(r);
          logged.push(r);
        }
        if (r.batchLast < 0) {
          r.batchLast = r.last;
          r.batchLastMs = r.lastMs;
          touched.push(r);
        }
        const offset = ++r.last;
        r.lastMs = e.timeMs;
        frame.message(r.id, offset, e.timeMs, e.body);
        out[i] = { offset, epoch: r.epoch };
        of[i] = r;
      }
      if (lastId > lastMessageId) frame.lastId(lastId);
      commit();
    } catch (err) {
      for (const r of touched) {
        r.last = r.batchLast;
        r.lastMs = r.batchLastMs;
        r.batchLast = -1;
      }
      for (const r of created) forget(r, false);
      // Rooms asked for before stay in memory, not logged after all.
      for (const r of logged) {
        byId.delete(r.id);
        r.id = 0;
      }
      while (reused.length > 0) freeIds.push(reused.pop()!);
      nextRoomId = idBefore;
      of.length =
        touched.length =
        created.length =
        logged.length =
          0;
      status.failed(err);
      store.onCommit?.(performance.now() - t0, false);
      throw err;
    }
    for (let i = 0; i < n; i++) {
      const e = entries[i];
      of[i].push(out[i].offset, e.body, e.timeMs, limits);
    }
    for (const r of touched) r.batchLast = -1;
    of.length =
      touched.length =
      created.length =
      logged.length =
        0;
    reused.length = 0;
    if (lastId > lastMessageId) lastMessageId = lastId;
    const ms = performance.now() - t0;
    status.ok(ms);
    store.onCommit?.(ms, true);
    if (written >= compactBytes * 0.75) {
      // Most of the segment reaches the disk beside the event loop, so that
      // roll()'s own sync has little left to wait for.
      if (!presynced && written >= compactAt() * 0.75) startPresync();
      maybeCompact();
    }
    if (rooms.size > maxRooms) bound();
    return out;
  };

  /**
   * Past `maxRooms`: the least recently written rooms are forgotten, their
   * drops in one frame (as a sweep does). A failed write leaves them for
   * the next time.
   */
  const bound = (keep?: string) => {
    dropRooms(roomsToForget<LogRoom>(budget, rooms.size, maxRooms, keep));
  };

  /**
   * Forgets `gone`, the drops of those in the log in one frame (none for
   * rooms never logged). A failed write forgets nothing.
   */
  const dropRooms = (gone: readonly LogRoom[]): void => {
    frame.reset();
    let drops = 0;
    for (const r of gone) {
      if (r.id === 0) continue;
      frame.drop(r.id);
      drops++;
    }
    try {
      if (drops > 0) commit();
    } catch {
      return; // kept until the next time (a sweep, a bound, a release)
    }
    for (const r of gone) forget(r, true);
  };

  /** The size at which the segment is rolled and compacted. */
  const compactAt = () => Math.max(compactBytes, 2 * snapshotBytes);

  const startPresync = () => {
    presynced = true;
    const p: Promise<void> = segment.syncData().catch(() => {
      // roll() syncs again, synchronously, and fails the roll if that fails
    }).finally(() => {
      if (presync === p) presync = undefined;
    });
    presync = p;
  };

  /**
   * Starts a new segment; returns the state at that moment. The old one is
   * synced first: after a power loss, no segment but the newest may have
   * lost its end (its successor would hold later offsets).
   */
  const roll = (): Rolled => {
    if (dirty) throw new Error("the log has a failed write to cut off first");
    segment.syncDataSync();
    const next = seq + 1;
    const path = join(dir, segmentName(next));
    const file = createSegment(path);
    const head = segmentHead(next, lastMessageId, nextRoomId);
    try {
      writeAll(file, head);
    } catch (err) {
      file.close();
      try {
        Deno.removeSync(path);
      } catch { /* the next roll replaces it (createSegment) */ }
      throw err;
    }
    const old = segment;
    segment = file;
    seq = next;
    written = head.length;
    presynced = false;
    // Rooms holding messages in the order of their last write (the budget's):
    // replaying the snapshot then leaves the same order, so the store-wide
    // bound trims the same messages after a restart.
    const captured: Rolled["rooms"] = [];
    const order: LogRoom[] = [];
    // Empty ones first, in the order they became empty, which replay keeps
    // too (a room bound forgets the same ones after a restart); not the
    // rooms never logged: they hold nothing to keep.
    for (const r of budget.oldest()) {
      if ((r as LogRoom).id !== 0) order.push(r as LogRoom);
    }
    for (const r of order) {
      captured.push({
        id: r.id,
        name: r.name,
        epoch: r.epoch,
        last: r.last,
        lastMs: r.lastMs,
        view: r.view(),
      });
    }
    return { seq, old, lastMessageId, nextRoomId, rooms: captured };
  };

  const maybeCompact = () => {
    if (compacting || closed || Date.now() < compactAfter) return;
    if (written < compactAt()) return;
    let rolled: Rolled;
    try {
      rolled = roll();
    } catch (err) {
      compactAfter = Date.now() + COMPACT_RETRY_MS;
      warn(
        `history: cannot start a new log segment: ${(err as Error).message}`,
      );
      return;
    }
    compacting = writeSnapshot(dir, rolled, () => closed, options.onCompaction)
      .then((bytes) => {
        snapshotBytes = bytes;
      }, (err) => {
        compactAfter = Date.now() + COMPACT_RETRY_MS;
        if (!closed) {
          warn(`history: compaction failed: ${(err as Error).message}`);
        }
      }).finally(() => compacting = undefined);
  };

  // Rooms silent for longer than the TTL are forgotten: a drop record each
  // (one frame per sweep), so that a restart forgets them too.
  const sweep = () => {
    const expired = expiredRooms(rooms, limits, now());
    if (expired.length > 0) dropRooms(expired.map((name) => rooms.get(name)!));
  };
  const timer = sweepEvery(limits.ttlMs, sweep);

  const store: LogStore = {
    kind: "log",
    get lastMessageId() {
      return lastMessageId;
    },
    appendSync,
    append(entries: readonly AppendEntry[], lastId: number) {
      try {
        return Promise.resolve(appendSync(entries, lastId));
      } catch (err) {
        return Promise.reject(err);
      }
    },
    position(name: string): Promise<RoomPosition> {
      if (closed) return Promise.reject(new Error("history store closed"));
      let r = rooms.get(name);
      if (r === undefined) {
        r = openRoom(name, now());
        if (rooms.size > maxRooms) bound(name);
      }
      return Promise.resolve({ epoch: r.epoch, offset: r.last });
    },
    release(name: string) {
      const r = rooms.get(name);
      if (r === undefined || r.last !== 0 || closed) return;
      // Never logged: nothing to write. One in the log (an older version
      // logged rooms when asked for): its drop is, so a restart does not
      // bring it back.
      dropRooms([r]);
    },
    read: (name: string, after: number, limit: number, epoch?: string) =>
      readRetained(rooms, name, after, limit, limits, now(), epoch),
    status: (): StoreStatus => status.snapshot(),
    idle: async () => {
      while (compacting || presync) await (compacting ?? presync);
    },
    close() {
      if (closed) return;
      closed = true;
      clearInterval(timer);
      const release = () => {
        try {
          segment.syncDataSync();
        } catch { /* the page cache has it anyway */ }
        segment.close();
        lock.close();
      };
      // A compaction stops at its next chunk; it owns the old segment. An
      // early sync (it never rejects) is let finish.
      if (compacting || presync) {
        return Promise.all([compacting, presync]).then(release);
      }
      release();
    },
  };
  return store;
}
