/**
 * The log store's files (log_store.ts) in its data directory, and reading
 * their frames back.
 *
 * - `history.lock`: held (`flock`, exclusive) while a process has the
 *   directory open, so that two cores never write one log.
 * - `history-<seq>.log`: log segments, appended to; only the newest one is
 *   written.
 * - `history-<seq>.snapshot`: the retained state of every room before
 *   segment `<seq>`; segments and snapshots older than the newest snapshot
 *   are obsolete (deleted once it is in place). `.tmp` while being written.
 */
import { join } from "node:path";
import { FRAME_HEADER, frameLength, payloadIntact } from "./log_format.ts";
import { StoreOpenError } from "./store_open_error.ts";

export const LOCK_FILE = "history.lock";
const PREFIX = "history-";
const SEGMENT = ".log";
const SNAPSHOT = ".snapshot";
export const TMP = ".tmp";

const pad = (seq: number) => String(seq).padStart(12, "0");
export const segmentName = (seq: number) => `${PREFIX}${pad(seq)}${SEGMENT}`;
export const snapshotName = (seq: number) => `${PREFIX}${pad(seq)}${SNAPSHOT}`;

/** The history files of a data directory, by sequence, oldest first. */
export interface Listing {
  segments: number[];
  snapshots: number[];
  /** Unfinished snapshots (a compaction that did not complete). */
  temps: string[];
}

/** Whether `path` exists (any kind of file). */
export function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

export function listDir(dir: string): Listing {
  const out: Listing = { segments: [], snapshots: [], temps: [] };
  const pattern = /^history-(\d{12})(\.log|\.snapshot)(\.tmp)?$/;
  for (const entry of Deno.readDirSync(dir)) {
    const m = pattern.exec(entry.name);
    if (!m) continue;
    if (m[3]) out.temps.push(entry.name);
    else if (m[2] === SEGMENT) out.segments.push(Number(m[1]));
    else out.snapshots.push(Number(m[1]));
  }
  out.segments.sort((a, b) => a - b);
  out.snapshots.sort((a, b) => a - b);
  return out;
}

/** Creates the data directory `dir` if need be; StoreOpenError if it cannot. */
export function makeDataDir(dir: string): void {
  try {
    Deno.mkdirSync(dir, { recursive: true });
  } catch (err) {
    throw new StoreOpenError(
      `cannot create data directory ${dir}: ${(err as Error).message}`,
      { cause: err },
    );
  }
}

/**
 * Takes the directory's lock, or throws StoreOpenError when another process
 * holds it. The lock lasts until the returned file is closed (or the
 * process ends, however it ends).
 */
export function lockDir(dir: string): Deno.FsFile {
  const path = join(dir, LOCK_FILE);
  let file: Deno.FsFile;
  try {
    file = Deno.openSync(path, { read: true, write: true, create: true });
  } catch (err) {
    throw new StoreOpenError(
      `cannot open ${path}: ${(err as Error).message}`,
      { cause: err },
    );
  }
  let locked = false;
  try {
    locked = file.tryLockSync(true);
  } catch (err) {
    file.close();
    throw new StoreOpenError(
      `cannot lock ${path}: ${(err as Error).message}`,
      { cause: err },
    );
  }
  if (!locked) {
    file.close();
    throw new StoreOpenError(
      `data directory ${dir} is in use by another process (${path} is locked)`,
    );
  }
  return file;
}

/** A window over a file being read, refilled as reading moves on. */
class Window {
  buf = new Uint8Array(1 << 20);
  /** File position of `buf[0]`. */
  pos = 0;
  len = 0;

  constructor(readonly file: Deno.FsFile, readonly size: number) {}

  /** Makes bytes [pos, pos + n) readable; false past the end of the file. */
  ensure(pos: number, n: number): boolean {
    if (pos + n > this.size) return false;
    if (pos >= this.pos && pos + n <= this.pos + this.len) return true;
    if (n > this.buf.length) {
      this.buf = new Uint8Array(Math.max(n, this.buf.length * 2));
    }
    const want = Math.min(this.buf.length, this.size - pos);
    this.file.seekSync(pos, Deno.SeekMode.Start);
    let got = 0;
    while (got < want) {
      const r = this.file.readSync(this.buf.subarray(got, want));
      if (r === null || r === 0) throw new Error("the file shrank while read");
      got += r;
    }
    this.pos = pos;
    this.len = got;
    return true;
  }

  /** Whether every byte from `pos` to the end of the file is zero. */
  zerosFrom(pos: number): boolean {
    for (let at = pos; at < this.size;) {
      const n = Math.min(this.buf.length, this.size - at);
      this.ensure(at, n);
      const b = this.buf.subarray(at - this.pos, at - this.pos + n);
      for (let i = 0; i < n; i++) if (b[i] !== 0) return false;
      at += n;
    }
    return true;
  }
}

/** How reading a file ended. */
export interface ReadResult {
  /** The file's size. */
  size: number;
  /** Where the last intact frame ends. */
  end: number;
  /** Why the rest (from `end`) was not read: a torn last write. */
  torn?: string;
}

/**
 * Hands every frame's payload of `path` to `onFrame`, in order (a view into
 * the read buffer). A damaged frame that can only be an incomplete last write
 * (it runs past the end of the file, or its header and everything after it
 * are zeros) ends reading with `torn` when `tornOk`. A complete frame whose
 * checksum does not match is never torn: a write that `kill -9` stops leaves
 * a frame shorter than its length, not a wrong one. Any other damage, an error from
 * `onFrame`, or a file that cannot be read throws StoreOpenError naming the
 * file and the byte.
 */
export function readFrames(
  path: string,
  onFrame: (payload: Uint8Array) => void,
  tornOk: boolean,
): ReadResult {
  let file: Deno.FsFile;
  try {
    file = Deno.openSync(path, { read: true });
  } catch (err) {
    throw new StoreOpenError(
      `cannot read ${path}: ${(err as Error).message}`,
      { cause: err },
    );
  }
  let pos = 0;
  try {
    const w = new Window(file, file.statSync().size);
    const size = w.size;
    while (pos < size) {
      let damage: string | undefined;
      let tail = true;
      let length: number | undefined;
      if (!w.ensure(pos, FRAME_HEADER)) {
        damage = "an incomplete frame header";
      } else if ((length = frameLength(w.buf, pos - w.pos)) === undefined) {
        damage = "a damaged frame header";
        tail = w.zerosFrom(pos);
      } else if (!w.ensure(pos, FRAME_HEADER + length)) {
        damage = `an incomplete frame (${
          size - pos - FRAME_HEADER
        } of ${length} bytes)`;
      } else if (!payloadIntact(w.buf, pos - w.pos, length)) {
        // Complete, so written whole: damage after the fact, never torn.
        damage = "a frame whose checksum does not match";
        tail = false;
      }
      if (damage !== undefined) {
        if (tail && tornOk) return { size, end: pos, torn: damage };
        const follow = !tail &&
          !w.zerosFrom(pos + FRAME_HEADER + (length ?? 0));
        throw new StoreOpenError(
          `${path} is damaged at byte ${pos}: ${damage}` +
            (follow ? ", and records follow it" : ""),
        );
      }
      const start = pos - w.pos + FRAME_HEADER;
      onFrame(w.buf.subarray(start, start + length!));
      pos += FRAME_HEADER + length!;
    }
    return { size, end: pos };
  } catch (err) {
    if (err instanceof StoreOpenError) throw err;
    throw new StoreOpenError(
      `${path} is unreadable at byte ${pos}: ${(err as Error).message}`,
      { cause: err },
    );
  } finally {
    file.close();
  }
}
