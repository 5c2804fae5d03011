/**
 * Start-up of the log store (log_store.ts): rebuilds every room from the
 * newest snapshot and the log segments after it, then opens the last segment
 * for appending.
 *
 * Replay is strict: a room record must name a new room, a message must carry
 * its room's next offset, a snapshot must end with its end record. Anything
 * else is damage, and start-up stops with StoreOpenError naming the file and
 * the byte. The one exception is the very end of the last segment: a frame
 * cut short there (or an all-zero header followed only by zeros) is a write
 * that never completed, so never acknowledged; it is cut off with a warning.
 * A complete frame with a bad checksum is damage even there.
 */
import { join } from "node:path";
import type { HistoryLimits } from "../rooms/history_store.ts";
import {
  decodeRecords,
  FrameBuilder,
  KIND_SEGMENT,
  KIND_SNAPSHOT,
  type RecordVisitor,
} from "./log_format.ts";
import {
  listDir,
  type Listing,
  readFrames,
  segmentName,
  snapshotName,
} from "./log_files.ts";
import { RetainedBudget, RetainedRoom } from "./retained_room.ts";
import { StoreOpenError } from "./store_open_error.ts";

/** A room of the log store: retained messages and its id in the log. */
export class LogRoom extends RetainedRoom {
  /** While a batch is being encoded: the last offset before it; else -1. */
  batchLast = -1;
  batchLastMs = 0;

  /**
   * `id`: its number in the log; 0 for a room not in the log yet (made by
   * a subscription, logged with its first message).
   */
  constructor(
    public id: number,
    readonly name: string,
    epoch: string,
    nowMs: number,
    budget: RetainedBudget,
  ) {
    super(epoch, nowMs, budget);
  }
}

/** The state a data directory holds. */
export interface Recovered {
  rooms: Map<string, LogRoom>;
  byId: Map<number, LogRoom>;
  lastMessageId: number;
  nextRoomId: number;
  /** The segment to append to (opened for appending), its number and size. */
  segment: Deno.FsFile;
  seq: number;
  size: number;
  /** The size of the snapshot read (0: none). */
  snapshotBytes: number;
}

/** Applies records to the rooms; throws on anything out of place. */
class Replayer implements RecordVisitor {
  rooms = new Map<string, LogRoom>();
  byId = new Map<number, LogRoom>();
  lastMessageId = 0;
  nextRoomId = 1;
  /** What the file being read is, and what it must start with. */
  kind = KIND_SEGMENT;
  seq = 0;
  headed = false;
  ended = false;
  messages = 0;

  constructor(
    readonly limits: HistoryLimits,
    readonly budget: RetainedBudget,
  ) {}

  #room(id: number): LogRoom {
    const r = this.byId.get(id);
    if (r === undefined) throw new Error(`a record for unknown room ${id}`);
    return r;
  }

  #first(): void {
    if (!this.headed) throw new Error("no head record");
    if (this.ended) throw new Error("records after the end record");
  }

  head(kind: number, seq: number, lastId: number, nextRoomId: number): void {
    if (this.headed) throw new Error("a second head record");
    if (kind !== this.kind || seq !== this.seq) {
      throw new Error(`head record of kind ${kind}, number ${seq}`);
    }
    this.headed = true;
    this.lastMessageId = Math.max(this.lastMessageId, lastId);
    this.nextRoomId = Math.max(this.nextRoomId, nextRoomId);
  }

  room(id: number, last: number, lastMs: number, epoch: string, name: string) {
    this.#first();
    if (this.byId.has(id) || this.rooms.has(name)) {
      throw new Error(`room ${id} (${JSON.stringify(name)}) created twice`);
    }
    if (this.kind === KIND_SEGMENT && last !== 0) {
      throw new Error(`new room ${id} at offset ${last}`);
    }
    const r = new LogRoom(id, name, epoch, lastMs, this.budget);
    r.last = last;
    this.rooms.set(name, r);
    this.byId.set(id, r);
    this.nextRoomId = Math.max(this.nextRoomId, id + 1);
  }

  message(roomId: number, offset: number, timeMs: number, body: Uint8Array) {
    this.#first();
    const r = this.#room(roomId);
    if (this.kind === KIND_SNAPSHOT) {
      const view = r.view();
      const prev = view.end > view.start ? view.offsetAt(view.end - 1) : 0;
      if (offset <= prev || offset > r.last) {
        throw new Error(`room ${roomId}: offset ${offset} out of order`);
      }
      this.messages++;
    } else {
      if (offset !== r.last + 1) {
        throw new Error(
          `room ${roomId}: offset ${offset} after ${r.last} (a gap)`,
        );
      }
      r.last = offset;
      r.lastMs = timeMs;
    }
    r.push(offset, body, timeMs, this.limits);
  }

  lastId(n: number): void {
    this.#first();
    this.lastMessageId = Math.max(this.lastMessageId, n);
  }

  drop(roomId: number): void {
    this.#first();
    const r = this.#room(roomId);
    r.release();
    this.byId.delete(roomId);
    this.rooms.delete(r.name);
  }

  end(rooms: number, messages: number): void {
    this.#first();
    if (this.kind !== KIND_SNAPSHOT) throw new Error("an end record in a log");
    if (rooms !== this.rooms.size || messages !== this.messages) {
      throw new Error(
        `end record counts ${rooms} rooms, ${messages} messages; read ${this.rooms.size}, ${this.messages}`,
      );
    }
    this.ended = true;
  }

  /** Reads one file; true if its end was torn. */
  read(path: string, kind: number, seq: number, tornOk: boolean) {
    this.kind = kind;
    this.seq = seq;
    this.headed = false;
    this.ended = false;
    this.messages = 0;
    return readFrames(path, (p) => decodeRecords(p, this), tornOk);
  }
}

/** A fresh segment's first frame. */
export function segmentHead(
  seq: number,
  lastMessageId: number,
  nextRoomId: number,
): Uint8Array {
  const b = new FrameBuilder(64);
  b.head(KIND_SEGMENT, seq, lastMessageId, nextRoomId);
  return b.finish().slice();
}

/** Writes all of `bytes` to `file` (a write may take only part). */
export function writeAll(file: Deno.FsFile, bytes: Uint8Array): void {
  let at = file.writeSync(bytes);
  while (at < bytes.length) at += file.writeSync(bytes.subarray(at));
}

/**
 * Reads the data directory `dir` (already locked) and opens its last segment
 * for appending (creating the first one). The rooms keep their bytes in
 * `budget`, trimmed as they were when written. `warn` hears of a torn tail
 * cut off.
 */
export function recover(
  dir: string,
  limits: HistoryLimits,
  budget: RetainedBudget,
  warn: (message: string) => void,
): Recovered {
  let list: Listing;
  try {
    list = listDir(dir);
  } catch (err) {
    throw new StoreOpenError(
      `cannot list data directory ${dir}: ${(err as Error).message}`,
      { cause: err },
    );
  }
  const replay = new Replayer(limits, budget);
  const snap = list.snapshots.at(-1);
  let snapshotBytes = 0;
  if (snap !== undefined) {
    const path = join(dir, snapshotName(snap));
    snapshotBytes = replay.read(path, KIND_SNAPSHOT, snap, false).size;
    if (!replay.ended) {
      throw new StoreOpenError(`${path} is damaged: it has no end record`);
    }
  }
  const first = snap ?? 1;
  const segments = list.segments.filter((s) => s >= first);
  // roll() creates segment N before snapshot N: without it the newest
  // commits are gone, and a fresh segment would reuse their offsets.
  if (snap !== undefined && segments.length === 0) {
    throw new StoreOpenError(
      `${join(dir, segmentName(snap))} is missing (snapshot ` +
        `${snapshotName(snap)} has no log segment after it)`,
    );
  }
  for (let i = 0; i < segments.length; i++) {
    if (segments[i] !== first + i) {
      throw new StoreOpenError(
        `${join(dir, segmentName(first + i))} is missing ` +
          `(found ${segments.map(segmentName).join(", ")})`,
      );
    }
  }
  let seq = first;
  let size = 0;
  for (const [i, s] of segments.entries()) {
    const path = join(dir, segmentName(s));
    const last = i === segments.length - 1;
    const read = replay.read(path, KIND_SEGMENT, s, last);
    if (!replay.headed && !last) {
      throw new StoreOpenError(`${path} is damaged: it is empty`);
    }
    seq = s;
    size = read.end;
    if (read.torn !== undefined) {
      try {
        Deno.truncateSync(path, read.end);
      } catch (err) {
        throw new StoreOpenError(
          `cannot cut the torn end off ${path}: ${(err as Error).message}`,
          { cause: err },
        );
      }
      warn(
        `history: ${path}: cut off ${read.size - read.end} bytes at byte ` +
          `${read.end} (${read.torn}): a write that never completed, never acknowledged`,
      );
    }
  }
  const path = join(dir, segmentName(seq));
  let segment: Deno.FsFile | undefined;
  try {
    segment = Deno.openSync(path, { append: true, create: true });
    if (size === 0) {
      writeAll(
        segment,
        segmentHead(seq, replay.lastMessageId, replay.nextRoomId),
      );
      size = segment.statSync().size;
    }
  } catch (err) {
    segment?.close();
    throw new StoreOpenError(
      `cannot open ${path} for writing: ${(err as Error).message}`,
      { cause: err },
    );
  }
  // Left by a compaction that was stopped: superseded, or never finished.
  const obsolete = [
    ...list.temps,
    ...list.snapshots.filter((s) => s !== snap).map(snapshotName),
    ...list.segments.filter((s) => s < first).map(segmentName),
  ];
  for (const name of obsolete) {
    try {
      Deno.removeSync(join(dir, name));
    } catch { /* tried again at the next start */ }
  }
  return {
    rooms: replay.rooms,
    byId: replay.byId,
    lastMessageId: replay.lastMessageId,
    nextRoomId: replay.nextRoomId,
    segment: segment!,
    seq,
    size,
    snapshotBytes,
  };
}
