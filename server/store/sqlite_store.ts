/**
 * Durable history in an embedded SQLite database (Deno's built-in
 * `node:sqlite`), the default store: nothing to install.
 *
 * WAL mode with `synchronous = NORMAL`: a commit is one append to the WAL
 * file, with no fsync; the WAL is synced at checkpoints. A committed message
 * survives the process being killed (the OS holds its pages); a power loss
 * may lose the last commits. One transaction holds every message of an
 * event-loop turn (the domain batches them), so a commit costs a write
 * system call per turn, not per message.
 *
 * Offsets and epochs are kept in memory (`rooms`, loaded at open) so that an
 * append needs no reads; a failed transaction rolls them back. Size trimming
 * happens in the append's own transaction (a range delete per room once it
 * is size/16 over its limit; reads skip the extra rows); TTL trimming runs
 * on a timer in bounded steps, so neither ever holds up a publish for long.
 * `busy_timeout` is 0: SQLite is synchronous, and waiting for another
 * process's lock would stall the event loop; a locked database fails the
 * commit (UNAVAILABLE) instead.
 *
 * A file that is not a database, or fails SQLite's quick check, stops
 * start-up with {@linkcode StoreOpenError} naming it: history is never
 * silently wiped.
 */
import { DatabaseSync, type StatementSync } from "node:sqlite";
import { join } from "node:path";
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
import { afterBound, sweepEvery } from "./retained_room.ts";
import { StoreOpenError } from "./store_open_error.ts";

export { StoreOpenError };

/** Options of {@linkcode openSqliteStore}. */
export interface SqliteStoreOptions extends HistoryLimits {
  /** The directory of the data file (created if missing). */
  dataDir: string;
  now?: () => number;
}

/** The data file's name inside the data directory. */
export const DATA_FILE = "chat.sqlite";

export interface RoomRow {
  id: number;
  epoch: string;
  last: number;
  lastMs: number;
  /** Offsets up to this one are already trimmed by size. */
  trimmed: number;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS rooms (
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL UNIQUE,
  epoch TEXT NOT NULL,
  last_seq INTEGER NOT NULL,
  last_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS messages (
  room_id INTEGER NOT NULL,
  seq INTEGER NOT NULL,
  time_ms INTEGER NOT NULL,
  body BLOB NOT NULL,
  PRIMARY KEY (room_id, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS rooms_by_last_ms ON rooms (last_ms, id);
`;

/** Rooms a TTL sweep step handles before letting commits run. */
const SWEEP_ROOMS = 200;
/** Rooms, and their messages, the room bound forgets per transaction. */
const BOUND_STEP = 1000;
const BOUND_ROWS = 100_000;

/** Rows kept over the size limit before a trim: size / this. */
const TRIM_SLACK_DIVISOR = 16;

/** Rows per INSERT statement: fewer statement runs per batch. */
const CHUNK = 16;

/** A data file opened and checked, its rooms loaded (openSqliteDatabase). */
export interface SqliteDatabase {
  db: DatabaseSync;
  /** By room name. */
  rooms: Map<string, RoomRow>;
  lastMessageId: number;
}

/**
 * Opens (or creates) the SQLite data file `file` in WAL mode, checks it and
 * loads its rooms: the open of {@linkcode openSqliteStore}, also used by the
 * log store's one-time import (log_import.ts). Throws StoreOpenError naming
 * the file when it cannot be opened, is not a database or is damaged.
 */
export function openSqliteDatabase(file: string): SqliteDatabase {
  let db: DatabaseSync;
  try {
    db = new DatabaseSync(file);
  } catch (err) {
    throw new StoreOpenError(
      `cannot open data file ${file}: ${(err as Error).message}`,
      { cause: err },
    );
  }
  const rooms = new Map<string, RoomRow>();
  try {
    db.exec("PRAGMA busy_timeout = 0");
    const check = db.prepare("PRAGMA quick_check").all() as {
      quick_check: string;
    }[];
    if (check.length !== 1 || check[0].quick_check !== "ok") {
      throw new Error(
        `quick_check: ${check.map((r) => r.quick_check).join("; ")}`,
      );
    }
    db.exec("PRAGMA journal_mode = WAL");
    db.exec("PRAGMA synchronous = NORMAL");
    db.exec(SCHEMA);
    for (
      const row of db.prepare(
        "SELECT id, name, epoch, last_seq, last_ms FROM rooms",
      ).all() as {
        id: number;
        name: string;
        epoch: string;
        last_seq: number;
        last_ms: number;
      }[]
    ) {
      rooms.set(row.name, {
        id: row.id,
        epoch: row.epoch,
        last: row.last_seq,
        lastMs: row.last_ms,
        trimmed: 0,
      });
    }
    const id = db.prepare(
      "SELECT value FROM meta WHERE key = 'last_message_id'",
    ).get() as { value: number } | undefined;
    return { db, rooms, lastMessageId: id?.value ?? 0 };
  } catch (err) {
    try {
      db.close();
    } catch { /* already unusable */ }
    throw new StoreOpenError(
      `data file ${file} is unreadable: ${(err as Error).message}`,
      { cause: err },
    );
  }
}

/**
 * The retained messages of a room from offset `after` on (oldest first, at
 * most `limit`, none older than `cutoffMs`): a prepared statement's
 * arguments are (room id, after, cutoffMs, limit).
 */
export const READ_SQL =
  "SELECT seq, time_ms, body FROM messages WHERE room_id = ? AND seq > ? AND time_ms >= ? ORDER BY seq LIMIT ?";

/** A row of {@linkcode READ_SQL}. */
export type ReadRow = {
  seq: number;
  time_ms: number;
  body: Uint8Array;
};

/**
 * Opens (or creates) `<dataDir>/chat.sqlite`. Throws StoreOpenError naming
 * the file when it cannot be opened, is not a database or is damaged.
 */
export function openSqliteStore(options: SqliteStoreOptions): HistoryStore {
  const limits: HistoryLimits = { size: options.size, ttlMs: options.ttlMs };
  const maxRooms = options.maxRooms ?? Infinity;
  const now = options.now ?? Date.now;
  const file = join(options.dataDir, DATA_FILE);
  try {
    Deno.mkdirSync(options.dataDir, { recursive: true });
  } catch (err) {
    throw new StoreOpenError(
      `cannot open data file ${file}: ${(err as Error).message}`,
      { cause: err },
    );
  }
  const opened = openSqliteDatabase(file);
  const { db, rooms } = opened;
  let { lastMessageId } = opened;

  const sql = {
    insertOne: db.prepare(
      "INSERT INTO messages (room_id, seq, time_ms, body) VALUES (?, ?, ?, ?)",
    ),
    insertChunk: db.prepare(
      "INSERT INTO messages (room_id, seq, time_ms, body) VALUES " +
        Array(CHUNK).fill("(?, ?, ?, ?)").join(", "),
    ),
    insertRoom: db.prepare(
      "INSERT INTO rooms (name, epoch, last_seq, last_ms) VALUES (?, ?, 0, ?)",
    ),
    updateRoom: db.prepare(
      "UPDATE rooms SET last_seq = ?, last_ms = ? WHERE id = ?",
    ),
    trimSize: db.prepare("DELETE FROM messages WHERE room_id = ? AND seq <= ?"),
    trimTime: db.prepare(
      "DELETE FROM messages WHERE room_id = ? AND seq IN " +
        "(SELECT seq FROM messages WHERE room_id = ? AND time_ms < ? ORDER BY seq LIMIT 1000)",
    ),
    deleteRoom: db.prepare("DELETE FROM rooms WHERE id = ?"),
    oldestRooms: db.prepare(
      "SELECT name FROM rooms ORDER BY last_ms, id LIMIT ?",
    ),
    deleteRoomMessages: db.prepare("DELETE FROM messages WHERE room_id = ?"),
    setLastId: db.prepare(
      "INSERT INTO meta (key, value) VALUES ('last_message_id', ?) " +
        "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    ),
    read: db.prepare(READ_SQL),
  } satisfies Record<string, StatementSync>;
  const status = new CommitStatus();
  // Size trimming waits until a room is this many messages over its limit:
  // one range delete per that many commits, not one per commit (about a
  // fifth of a lone message's commit cost). Reads never return the extra.
  const trimSlack = Math.max(1, Math.floor(limits.size / TRIM_SLACK_DIVISOR));

  /**
   * A room asked for: kept in memory only (`id` 0) until its first message,
   * so that subscribing to rooms nobody writes in writes nothing.
   */
  let unlogged = 0;
  const openRoom = (name: string, nowMs: number): RoomRow => {
    const row = {
      id: 0,
      epoch: newEpoch(),
      last: 0,
      lastMs: nowMs,
      trimmed: 0,
    };
    rooms.set(name, row);
    unlogged++;
    return row;
  };

  /** Writes `r`'s row (inside the batch's transaction). */
  const logRoom = (name: string, r: RoomRow) => {
    const { lastInsertRowid } = sql.insertRoom.run(name, r.epoch, r.lastMs);
    r.id = Number(lastInsertRowid);
    unlogged--;
  };

  const append = (entries: readonly AppendEntry[], lastId: number) => {
    const t0 = performance.now();
    // Room state before this batch, to restore when the transaction fails.
    const before = new Map<string, RoomRow | undefined>();
    const out: Appended[] = new Array(entries.length);
    const args: (number | Uint8Array)[] = [];
    try {
      db.exec("BEGIN");
      for (let i = 0; i < entries.length; i++) {
        const e = entries[i];
        let r = rooms.get(e.room);
        if (!before.has(e.room)) before.set(e.room, r && { ...r });
        r ??= openRoom(e.room, e.timeMs);
        if (r.id === 0) logRoom(e.room, r);
        r.last++;
        r.lastMs = e.timeMs;
        out[i] = { offset: r.last, epoch: r.epoch };
        args.push(r.id, r.last, e.timeMs, e.body);
        if (args.length === CHUNK * 4) {
          sql.insertChunk.run(...args);
          args.length = 0;
        }
      }
      for (let i = 0; i < args.length; i += 4) {
        sql.insertOne.run(args[i], args[i + 1], args[i + 2], args[i + 3]);
      }
      for (const name of before.keys()) {
        const r = rooms.get(name)!;
        sql.updateRoom.run(r.last, r.lastMs, r.id);
        const upTo = r.last - limits.size;
        if (upTo - r.trimmed >= trimSlack) {
          sql.trimSize.run(r.id, upTo);
          r.trimmed = upTo;
        }
      }
      if (lastId > lastMessageId) sql.setLastId.run(lastId);
      db.exec("COMMIT");
    } catch (err) {
      try {
        if (db.isTransaction) db.exec("ROLLBACK");
      } catch { /* the connection itself failed */ }
      for (const [name, old] of before) {
        // `unlogged` follows the rooms back: a row this batch wrote is gone.
        if (rooms.get(name)?.id === 0) unlogged--;
        if (old === undefined) rooms.delete(name);
        else rooms.set(name, old);
        if (old?.id === 0) unlogged++;
      }
      status.failed(err);
      store.onCommit?.(performance.now() - t0, false);
      return Promise.reject(err);
    }
    lastMessageId = Math.max(lastMessageId, lastId);
    if (rooms.size - unlogged > maxRooms) bound();
    const ms = performance.now() - t0;
    status.ok(ms);
    store.onCommit?.(ms, true);
    return Promise.resolve(out);
  };

  /**
   * Past `maxRooms`: the least recently written rooms (by the `last_ms`
   * index, so after a restart too) are forgotten with their messages, down
   * to `maxRooms` less a 64th, at most BOUND_STEP rooms or BOUND_ROWS
   * messages per transaction with other work between steps. A failed step
   * is tried again at the next new room.
   */
  let bounding: ReturnType<typeof setTimeout> | undefined;
  let closed = false;
  const bound = () => {
    bounding ??= setTimeout(boundStep, 0);
  };
  const boundTarget = afterBound(maxRooms);
  const boundStep = () => {
    bounding = undefined;
    if (closed) return;
    // Rooms only asked for are not in the table: they go when left.
    const excess = rooms.size - unlogged - boundTarget;
    if (excess <= 0) return;
    const gone: string[] = [];
    try {
      const oldest = sql.oldestRooms.all(Math.min(excess, BOUND_STEP)) as {
        name: string;
      }[];
      let rows = 0;
      db.exec("BEGIN");
      for (const { name } of oldest) {
        const r = rooms.get(name);
        // A row the Map does not hold as written (another writer): not ours.
        if (r === undefined || r.id === 0) continue;
        sql.deleteRoomMessages.run(r.id);
        sql.deleteRoom.run(r.id);
        gone.push(name);
        rows += r.last - r.trimmed;
        if (rows >= BOUND_ROWS) break;
      }
      db.exec("COMMIT");
    } catch {
      try {
        if (db.isTransaction) db.exec("ROLLBACK");
      } catch { /* the connection itself failed */ }
      return;
    }
    for (const name of gone) rooms.delete(name);
    if (gone.length > 0 && rooms.size - unlogged > boundTarget) bound();
  };

  // TTL: bounded deletes per room per sweep; rooms quiet for longer than
  // the TTL with nothing left are forgotten (a new epoch when used again).
  // A sweep does SWEEP_ROOMS rooms at a time and lets other work (commits)
  // run between steps, so many rooms never make one long pause.
  let sweeping: Iterator<[string, RoomRow]> | undefined;
  let step: ReturnType<typeof setTimeout> | undefined;
  const sweepStep = () => {
    step = undefined;
    if (sweeping === undefined) return;
    const cutoff = now() - limits.ttlMs;
    try {
      for (let n = 0; n < SWEEP_ROOMS; n++) {
        const next = sweeping.next();
        if (next.done) {
          sweeping = undefined;
          return;
        }
        const [name, r] = next.value;
        if (rooms.get(name) !== r) continue; // changed meanwhile
        if (r.id === 0) {
          // Only asked for, and long ago: nothing in the table.
          if (r.lastMs < cutoff) {
            rooms.delete(name);
            unlogged--;
          }
          continue;
        }
        sql.trimTime.run(r.id, r.id, cutoff);
        if (r.lastMs < cutoff) {
          db.exec("BEGIN");
          sql.deleteRoomMessages.run(r.id);
          sql.deleteRoom.run(r.id);
          db.exec("COMMIT");
          rooms.delete(name);
        }
      }
    } catch {
      // A locked or failing database: the next sweep tries again, and
      // reads skip expired messages meanwhile.
      try {
        if (db.isTransaction) db.exec("ROLLBACK");
      } catch { /* nothing more to do */ }
      sweeping = undefined;
      return;
    }
    step = setTimeout(sweepStep, 0);
  };
  const sweep = () => {
    if (sweeping !== undefined) return;
    // Over a copy: rooms may come and go between steps.
    sweeping = [...rooms][Symbol.iterator]();
    sweepStep();
  };
  const timer = sweepEvery(limits.ttlMs, sweep);

  const store: HistoryStore = {
    kind: "sqlite",
    get lastMessageId() {
      return lastMessageId;
    },
    append,
    position(name: string): Promise<RoomPosition> {
      try {
        if (closed) throw new Error("history store closed");
        const r = rooms.get(name) ?? openRoom(name, now());
        return Promise.resolve({ epoch: r.epoch, offset: r.last });
      } catch (err) {
        return Promise.reject(err);
      }
    },
    release(name: string) {
      const r = rooms.get(name);
      if (r === undefined || r.last !== 0) return;
      if (r.id === 0) {
        rooms.delete(name);
        unlogged--;
        return;
      }
      // A row from before rooms waited for their first message.
      try {
        sql.deleteRoom.run(r.id);
      } catch {
        return; // kept until the next release or the TTL
      }
      rooms.delete(name);
    },
    read(name: string, after: number, limit: number, epoch?: string) {
      const r = rooms.get(name);
      if (r === undefined || (epoch !== undefined && r.epoch !== epoch)) {
        return Promise.resolve([]);
      }
      const cutoff = limits.ttlMs > 0 ? now() - limits.ttlMs : 0;
      try {
        // Trimming lags by up to trimSlack rows: skip those.
        const from = Math.max(after, r.last - limits.size);
        const rows = sql.read.all(r.id, from, cutoff, limit) as ReadRow[];
        return Promise.resolve(
          rows.map((row): StoredMessage => ({
            offset: row.seq,
            body: row.body,
            timeMs: row.time_ms,
          })),
        );
      } catch (err) {
        return Promise.reject(err);
      }
    },
    status: (): StoreStatus => status.snapshot(),
    close() {
      clearInterval(timer);
      clearTimeout(step);
      clearTimeout(bounding);
      bounding = undefined;
      closed = true;
      sweeping = undefined;
      try {
        db.close();
      } catch { /* already closed */ }
    },
  };
  return store;
}
