/**
 * The default store: SQLite (sqlite_store.ts) on a worker thread.
 *
 * `node:sqlite` is synchronous: in the event loop's thread every insert and
 * commit would be time taken from serving calls (a few microseconds per
 * message, more than the rest of a SendMessage). On a worker, the main
 * thread only packs each turn's batch into a few typed arrays (bodies in one
 * buffer) and the commit runs beside it. Publishes are still
 * acknowledged only once the worker reports the commit.
 *
 * If the worker dies, every pending and later request fails (UNAVAILABLE
 * for publishes) and the status says "down".
 */
import type {
  Appended,
  AppendEntry,
  HistoryStore,
  RoomPosition,
  StoredMessage,
  StoreStatus,
} from "../rooms/history_store.ts";
import { CommitStatus } from "./commit_status.ts";
import type { Reply, Request } from "./sqlite_protocol.ts";
import { type SqliteStoreOptions, StoreOpenError } from "./sqlite_store.ts";

type Pending = { resolve(r: Reply): void; reject(err: Error): void };

/** Bodies of at least this many bytes are transferred, not copied. */
const TRANSFER_MIN = 64 * 1024;

/** How long close() waits for the worker to close the database. */
const CLOSE_WAIT_MS = 2000;

/**
 * Starts the worker and opens the database there. Rejects with
 * StoreOpenError naming the file when it is unusable.
 */
export async function openThreadedSqliteStore(
  options: Omit<SqliteStoreOptions, "now">,
): Promise<HistoryStore> {
  const worker = new Worker(
    new URL("./sqlite_worker.ts", import.meta.url).href,
    { type: "module" },
  );
  const pending = new Map<number, Pending>();
  const status = new CommitStatus();
  let nextId = 0;
  let dead: Error | undefined;
  let terminated = false;

  const terminate = () => {
    if (terminated) return;
    terminated = true;
    worker.terminate();
  };
  const failAll = (err: Error) => {
    dead ??= err;
    for (const p of pending.values()) p.reject(err);
    pending.clear();
  };
  worker.onmessage = (event: MessageEvent<Reply>) => {
    const r = event.data;
    const p = pending.get(r.id);
    if (p === undefined) return;
    pending.delete(r.id);
    if (r.type !== "error") return p.resolve(r);
    p.reject(
      r.name === "StoreOpenError"
        ? new StoreOpenError(r.message)
        : new Error(r.message),
    );
  };
  worker.onerror = (event: ErrorEvent) => {
    event.preventDefault();
    const err = new Error(`history store thread failed: ${event.message}`);
    status.failed(err);
    failAll(err);
    terminate();
  };

  const call = (
    req: Request,
    transfer: Transferable[] = [],
  ): Promise<Reply> => {
    if (dead) return Promise.reject(dead);
    return new Promise((resolve, reject) => {
      pending.set(req.id, { resolve, reject });
      worker.postMessage(req, transfer);
    });
  };

  let lastMessageId: number;
  try {
    const opened = await call({ type: "open", id: ++nextId, options });
    lastMessageId = (opened as Extract<Reply, { type: "opened" }>)
      .lastMessageId;
  } catch (err) {
    terminate();
    if (err instanceof StoreOpenError) throw err;
    // The worker could not start (a missing permission, say).
    throw new StoreOpenError(
      `cannot start the history store in ${options.dataDir}: ${
        (err as Error).message
      }`,
      { cause: err },
    );
  }

  const append = (entries: readonly AppendEntry[], lastId: number) => {
    const n = entries.length;
    const index = new Map<string, number>();
    const rooms: string[] = [];
    const roomOf = new Uint32Array(n);
    const ends = new Uint32Array(n);
    const times = new Float64Array(n);
    let total = 0;
    for (let i = 0; i < n; i++) total += entries[i].body.byteLength;
    const bodies = new Uint8Array(total);
    let at = 0;
    for (let i = 0; i < n; i++) {
      const e = entries[i];
      let r = index.get(e.room);
      if (r === undefined) {
        r = rooms.length;
        rooms.push(e.room);
        index.set(e.room, r);
      }
      roomOf[i] = r;
      bodies.set(e.body, at);
      at += e.body.byteLength;
      ends[i] = at;
      times[i] = e.timeMs;
    }
    const t0 = performance.now();
    return call({
      type: "append",
      id: ++nextId,
      rooms,
      roomOf,
      ends,
      times,
      bodies,
      lastMessageId: lastId,
      // Transferring a buffer costs more than copying a small one (a
      // one-message request: ~30 µs more per round trip, both threads), so
      // only large bodies are transferred. roomOf is read with the reply.
    }, total >= TRANSFER_MIN ? [bodies.buffer] : []).then(
      (reply) => {
        const r = reply as Extract<Reply, { type: "appended" }>;
        const out: Appended[] = new Array(n);
        for (let i = 0; i < n; i++) {
          out[i] = { offset: r.offsets[i], epoch: r.epochs[roomOf[i]] };
        }
        lastMessageId = Math.max(lastMessageId, lastId);
        status.ok(r.ms);
        store.onCommit?.(r.ms, true);
        return out;
      },
      (err: Error) => {
        status.failed(err);
        store.onCommit?.(performance.now() - t0, false);
        throw err;
      },
    );
  };

  const store: HistoryStore = {
    kind: "sqlite",
    get lastMessageId() {
      return lastMessageId;
    },
    append,
    async position(room: string): Promise<RoomPosition> {
      const r = await call({ type: "position", id: ++nextId, room });
      const { epoch, offset } = r as Extract<Reply, { type: "position" }>;
      return { epoch, offset };
    },
    release(room: string) {
      // In order with the calls around it; nothing to wait for.
      if (!dead) worker.postMessage({ type: "release", id: ++nextId, room });
    },
    async read(room: string, after: number, limit: number, epoch?: string) {
      const r = await call({
        type: "read",
        id: ++nextId,
        room,
        after,
        limit,
        epoch,
      });
      return (r as Extract<Reply, { type: "rows" }>).rows as StoredMessage[];
    },
    status: (): StoreStatus => status.snapshot(),
    async close() {
      if (terminated) return;
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([
        call({ type: "close", id: ++nextId }).catch(() => {}),
        new Promise((r) => timer = setTimeout(r, CLOSE_WAIT_MS)),
      ]);
      clearTimeout(timer);
      failAll(new Error("history store closed"));
      terminate();
    },
  };
  return store;
}
