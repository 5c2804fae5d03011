/**
 * The worker side of the threaded SQLite store (sqlite_thread.ts): owns the
 * database (openSqliteStore) and answers the main thread's requests.
 *
 * `node:sqlite` is synchronous; here its inserts, commits and WAL writes run
 * on their own thread, beside the event loop that serves the calls.
 */
/// <reference lib="deno.worker" />
import type { AppendEntry, HistoryStore } from "../rooms/history_store.ts";
import { openSqliteStore } from "./sqlite_store.ts";
import type { Reply, Request } from "./sqlite_protocol.ts";

let store: HistoryStore | undefined;

const reply = (message: Reply, transfer: Transferable[] = []) =>
  self.postMessage(message, transfer);

self.onmessage = async (event: MessageEvent<Request>) => {
  const req = event.data;
  try {
    switch (req.type) {
      case "open": {
        store = openSqliteStore(req.options);
        reply({
          type: "opened",
          id: req.id,
          lastMessageId: store.lastMessageId,
        });
        return;
      }
      case "append": {
        const { rooms, roomOf, ends, times, bodies } = req;
        const entries: AppendEntry[] = new Array(roomOf.length);
        let start = 0;
        for (let i = 0; i < roomOf.length; i++) {
          entries[i] = {
            room: rooms[roomOf[i]],
            body: bodies.subarray(start, ends[i]),
            timeMs: times[i],
          };
          start = ends[i];
        }
        const t0 = performance.now();
        const appended = await store!.append(entries, req.lastMessageId);
        const ms = performance.now() - t0;
        const offsets = new Float64Array(appended.length);
        const epochs: string[] = [];
        for (let i = 0; i < appended.length; i++) {
          offsets[i] = appended[i].offset;
          epochs[roomOf[i]] = appended[i].epoch;
        }
        // Copied, not transferred: cheaper for a few offsets.
        reply({ type: "appended", id: req.id, offsets, epochs, ms });
        return;
      }
      case "release":
        store!.release?.(req.room);
        return;
      case "position": {
        const p = await store!.position(req.room);
        reply({ type: "position", id: req.id, ...p });
        return;
      }
      case "read": {
        const rows = await store!.read(
          req.room,
          req.after,
          req.limit,
          req.epoch,
        );
        reply({ type: "rows", id: req.id, rows });
        return;
      }
      case "close":
        store?.close();
        store = undefined;
        reply({ type: "closed", id: req.id });
        return;
    }
  } catch (err) {
    const e = err as Error;
    reply({
      type: "error",
      id: req.id,
      name: e?.name ?? "Error",
      message: e?.message ?? String(err),
    });
  }
};
