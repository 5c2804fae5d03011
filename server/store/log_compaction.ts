/**
 * Compaction of the log store (log_store.ts): a snapshot of every room's
 * retained messages replaces the log segments before it.
 *
 * 1. The store rolls to a new segment and hands over the state at that
 *    moment: each room's counters and a view of its retained messages (one
 *    pointer each: views stay valid while the rooms go on, retained_room.ts).
 * 2. The old segment was synced by the roll, before anything was written to
 *    the new one (so that only the newest segment can ever end torn); it is
 *    synced again here (nothing left to write) and closed.
 * 3. The snapshot is written to `<name>.tmp` in frames of about
 *    {@linkcode CHUNK_BYTES}, one per event-loop turn, so publishes never
 *    wait for more than one chunk.
 * 4. It is synced, renamed into place (atomic), and the directory synced.
 * 5. The older segments and snapshots are deleted.
 *
 * A crash at any step leaves a directory that start-up reads whole: before
 * the rename, the old snapshot and every segment since it; after it, the new
 * snapshot (older files are then ignored and deleted). The tests kill a
 * process at each step.
 */
import { join } from "node:path";
import { FrameBuilder, KIND_SNAPSHOT } from "./log_format.ts";
import { listDir, segmentName, snapshotName, TMP } from "./log_files.ts";
import type { RetainedView } from "./retained_room.ts";

/** Frames of a snapshot are cut at about this size (one per turn). */
export const CHUNK_BYTES = 256 * 1024;

/** The steps of a compaction, in order (a test seam: the crash tests stop there). */
export const COMPACTION_STEPS = [
  "rolled",
  "snapshot-started",
  "snapshot-written",
  "snapshot-synced",
  "snapshot-renamed",
  "old-file-deleted",
  "done",
] as const;

/** Where a compaction is. */
export type CompactionStep = typeof COMPACTION_STEPS[number];

/** The state at the roll, to write as the snapshot. */
export interface Rolled {
  /** The new segment's number: the snapshot covers everything before it. */
  seq: number;
  /** The segment written until the roll (this module syncs and closes it). */
  old: Deno.FsFile;
  lastMessageId: number;
  nextRoomId: number;
  rooms: {
    id: number;
    name: string;
    epoch: string;
    last: number;
    lastMs: number;
    view: RetainedView;
  }[];
}

const turn = () => new Promise((r) => setTimeout(r, 0));

/** Syncs a directory, so that a rename or a new file in it lasts. */
export function syncDir(dir: string): void {
  const d = Deno.openSync(dir, { read: true });
  try {
    d.syncSync();
  } finally {
    d.close();
  }
}

/**
 * `syncDir` off the event loop. Right after a rename the directory's open
 * alone waited 45 ms here (the file system's journal commit), and a
 * compaction runs while the core serves calls.
 */
async function syncDirAsync(dir: string): Promise<void> {
  const d = await Deno.open(dir, { read: true });
  try {
    await d.sync();
  } finally {
    d.close();
  }
}

/**
 * Writes the snapshot of `rolled` into `dir` and deletes what it replaces;
 * resolves with the snapshot's size. Stops (rejecting, the `.tmp` removed)
 * when `stopped()` turns true between chunks.
 */
export async function writeSnapshot(
  dir: string,
  rolled: Rolled,
  stopped: () => boolean,
  step: (s: CompactionStep) => void = () => {},
): Promise<number> {
  step("rolled");
  try {
    await rolled.old.syncData();
  } finally {
    rolled.old.close();
  }
  const final = join(dir, snapshotName(rolled.seq));
  const tmp = final + TMP;
  // Every file system call below is async: a compaction runs beside the
  // calls this core serves, and none of them may stall its event loop.
  const file = await Deno.open(tmp, {
    write: true,
    create: true,
    truncate: true,
  });
  let size = 0;
  let closed = false;
  try {
    const b = new FrameBuilder(CHUNK_BYTES + 64 * 1024);
    const flush = async (last: boolean) => {
      const bytes = b.finish();
      let at = 0;
      while (at < bytes.length) at += await file.write(bytes.subarray(at));
      size += bytes.length;
      b.reset();
      if (last) return;
      step("snapshot-started");
      await turn();
      if (stopped()) throw new Error("history store closed");
    };
    b.head(KIND_SNAPSHOT, rolled.seq, rolled.lastMessageId, rolled.nextRoomId);
    let messages = 0;
    for (const r of rolled.rooms) {
      b.room(r.id, r.last, r.lastMs, r.epoch, r.name);
      const view = r.view;
      for (let i = view.start; i < view.end; i++) {
        b.message(r.id, view.offsetAt(i), view.timeAt(i), view.bodyAt(i));
        messages++;
        if (b.payloadBytes >= CHUNK_BYTES) await flush(false);
      }
      if (b.payloadBytes >= CHUNK_BYTES) await flush(false);
    }
    b.end(rolled.rooms.length, messages);
    await flush(true);
    step("snapshot-written");
    await file.syncData();
    file.close();
    closed = true;
    step("snapshot-synced");
    await Deno.rename(tmp, final);
    await syncDirAsync(dir);
  } catch (err) {
    if (!closed) file.close();
    await Deno.remove(tmp).catch(() => {/* start-up removes it */});
    throw err;
  }
  step("snapshot-renamed");
  // The snapshot is in place: what it replaces may go (start-up ignores
  // and removes whatever a crash here leaves).
  const list = listDir(dir);
  const old = [
    ...list.segments.filter((s) => s < rolled.seq).map(segmentName),
    ...list.snapshots.filter((s) => s < rolled.seq).map(snapshotName),
  ];
  for (const name of old) {
    await Deno.remove(join(dir, name));
    step("old-file-deleted");
  }
  step("done");
  return size;
}
