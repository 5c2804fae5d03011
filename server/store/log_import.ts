/**
 * The log store's one-time import of `--store sqlite` history: a data
 * directory upgraded in place (history in `chat.sqlite`, no log yet) keeps
 * every room's epoch, offsets and retained messages, and `msg_N` ids go on.
 *
 * The import is the log's first snapshot, written like a compaction's
 * (log_compaction.ts: `.tmp`, fsync, rename, directory fsync), so the
 * snapshot's rename is the one moment the import counts as done. The SQLite
 * file is first renamed to `chat.sqlite.importing` (after closing it, which
 * checkpoints its WAL into it), then to `chat.sqlite.imported` once the
 * snapshot is in place. A crash at any step leaves one of:
 *
 * - `chat.sqlite`, an empty log: the import starts again;
 * - `chat.sqlite.importing`, an empty log: it is read again from there;
 * - `chat.sqlite.importing` beside the snapshot: only the last rename is
 *   left to do.
 *
 * Never a half-import taken as complete: a snapshot without its end record
 * is never renamed into place. A damaged SQLite file is a StoreOpenError
 * naming it (exit 2). A `chat.sqlite` beside a log that already holds
 * history is left alone, with a warning.
 */
import { join } from "node:path";
import type { HistoryLimits } from "../rooms/history_store.ts";
import {
  type CompactionStep,
  syncDir,
  writeSnapshot,
} from "./log_compaction.ts";
import { exists, lockDir, segmentName } from "./log_files.ts";
import {
  recover,
  type Recovered,
  segmentHead,
  writeAll,
} from "./log_recovery.ts";
import { RetainedBudget, RetainedRoom } from "./retained_room.ts";
import {
  DATA_FILE,
  openSqliteDatabase,
  READ_SQL,
  type ReadRow,
} from "./sqlite_store.ts";
import { StoreOpenError } from "./store_open_error.ts";

/** Options of {@linkcode importSqlite}. */
export interface ImportOptions extends HistoryLimits {
  dataDir: string;
  now?: () => number;
  /** Where the one line about the import goes; stderr. */
  warn?: (message: string) => void;
  /** Hears each step (the crash tests stop there). */
  onStep?: (step: ImportStep) => void;
}

/** Where an import is: its own steps, then the snapshot's. */
export type ImportStep = "read" | "renamed-importing" | CompactionStep;

/** The SQLite file (and its WAL and shared-memory files) under a new name. */
const SIDE_FILES = ["", "-wal", "-shm"];

/** Renames the SQLite file and its side files, then syncs the directory. */
function renameDatabase(dir: string, from: string, to: string): void {
  for (const suffix of SIDE_FILES) {
    if (exists(from + suffix)) Deno.renameSync(from + suffix, to + suffix);
  }
  syncDir(dir);
}

/** `chat.sqlite.imported`, or `.imported.2`, … when taken by an earlier one. */
function freeName(base: string): string {
  if (!exists(base)) return base;
  for (let n = 2;; n++) if (!exists(`${base}.${n}`)) return `${base}.${n}`;
}

/** Whether the log holds no history: no message and no room with one. */
function holdsNothing(state: Recovered): boolean {
  if (state.lastMessageId !== 0) return false;
  for (const r of state.rooms.values()) if (r.last !== 0) return false;
  return true;
}

/** The rooms of a SQLite data file, read into memory within the limits. */
function readDatabase(file: string, limits: HistoryLimits, nowMs: number) {
  const { db, rooms, lastMessageId } = openSqliteDatabase(file);
  const out: {
    name: string;
    epoch: string;
    last: number;
    lastMs: number;
    room: RetainedRoom;
  }[] = [];
  let messages = 0;
  try {
    const read = db.prepare(READ_SQL);
    const cutoff = limits.ttlMs > 0 ? nowMs - limits.ttlMs : -Infinity;
    for (const [name, row] of rooms) {
      // Silent for longer than the TTL: SQLite's sweep would forget it.
      if (row.lastMs < cutoff) continue;
      const room = new RetainedRoom(row.epoch, row.lastMs);
      room.last = row.last;
      const from = Math.max(0, row.last - limits.size);
      const rows = read.all(
        row.id,
        from,
        Math.max(cutoff, 0),
        limits.size,
      ) as ReadRow[];
      for (const m of rows) room.push(m.seq, m.body, m.time_ms, limits);
      messages += room.size;
      out.push({
        name,
        epoch: row.epoch,
        last: row.last,
        lastMs: row.lastMs,
        room,
      });
    }
  } catch (err) {
    throw new StoreOpenError(
      `data file ${file} is unreadable: ${(err as Error).message}`,
      { cause: err },
    );
  } finally {
    // Closing the last connection checkpoints the WAL into the file.
    try {
      db.close();
    } catch { /* nothing was written */ }
  }
  return { rooms: out, messages, lastMessageId };
}

/**
 * Imports `<dataDir>/chat.sqlite` into an empty log in `dataDir` (or
 * finishes an import a crash stopped); does nothing when there is no SQLite
 * file. Takes the directory's lock for the time of the import. Rejects with
 * StoreOpenError naming the file when it is damaged or cannot be written.
 */
export async function importSqlite(options: ImportOptions): Promise<void> {
  const dir = options.dataDir;
  const source = join(dir, DATA_FILE);
  const importing = `${source}.importing`;
  if (!exists(source) && !exists(importing)) return;
  const warn = options.warn ?? ((m: string) => console.error(m));
  const step = options.onStep ?? (() => {});
  const limits: HistoryLimits = { size: options.size, ttlMs: options.ttlMs };
  const lock = lockDir(dir);
  try {
    const state = recover(dir, limits, new RetainedBudget(), warn);
    if (!holdsNothing(state)) {
      state.segment.close();
      if (exists(importing)) {
        // Stopped after the snapshot was in place: only the rename is left.
        const done = freeName(`${source}.imported`);
        renameDatabase(dir, importing, done);
        warn(`history: finished the import of ${source} (now ${done})`);
      } else {
        warn(
          `history: ${source} not imported: the log in ${dir} already ` +
            `holds history (start with --store sqlite to use the file)`,
        );
      }
      return;
    }
    let from = importing;
    let read: ReturnType<typeof readDatabase>;
    try {
      if (!exists(importing)) from = source;
      read = readDatabase(from, limits, (options.now ?? Date.now)());
      step("read");
      if (from === source) {
        renameDatabase(dir, source, importing);
        step("renamed-importing");
      }
    } catch (err) {
      state.segment.close();
      if (err instanceof StoreOpenError) throw err;
      throw new StoreOpenError(
        `cannot import ${from}: ${(err as Error).message}`,
        { cause: err },
      );
    }
    const rooms = read.rooms.map((r, i) => ({
      id: i + 1,
      name: r.name,
      epoch: r.epoch,
      last: r.last,
      lastMs: r.lastMs,
      view: r.room.view(),
    }));
    try {
      // Segment N before snapshot N, as a roll does (recover() refuses a
      // snapshot without its segment). Its head says nothing was imported
      // (the snapshot does): stopped before the snapshot is in place, the
      // log still holds nothing and the import starts again.
      const next = Deno.openSync(join(dir, segmentName(state.seq + 1)), {
        write: true,
        create: true,
        truncate: true,
      });
      try {
        writeAll(
          next,
          segmentHead(state.seq + 1, 0, 1),
        );
        next.syncDataSync();
      } finally {
        next.close();
      }
      await writeSnapshot(
        dir,
        {
          seq: state.seq + 1,
          old: state.segment,
          lastMessageId: read.lastMessageId,
          nextRoomId: rooms.length + 1,
          rooms,
        },
        () => false,
        step,
      );
      const done = freeName(`${source}.imported`);
      renameDatabase(dir, importing, done);
      warn(
        `history: imported ${rooms.length} rooms and ${read.messages} ` +
          `messages (message ids from msg_${read.lastMessageId + 1}) ` +
          `from ${source} into the log; the file is now ${done}`,
      );
    } catch (err) {
      throw new StoreOpenError(
        `cannot import ${importing} into the log in ${dir}: ${
          (err as Error).message
        }`,
        { cause: err },
      );
    }
  } finally {
    lock.close();
  }
}
