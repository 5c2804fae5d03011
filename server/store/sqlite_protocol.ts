/**
 * Messages between the threaded SQLite store (sqlite_thread.ts) and its
 * worker (sqlite_worker.ts). An append travels as a few typed arrays (one
 * buffer of bodies, transferred, not cloned per message).
 */
import type { SqliteStoreOptions } from "./sqlite_store.ts";
import type { StoredMessage } from "../rooms/history_store.ts";

export type Request =
  | {
    type: "open";
    id: number;
    options: Omit<SqliteStoreOptions, "now">;
  }
  | {
    type: "append";
    id: number;
    /** Distinct room names of the batch. */
    rooms: string[];
    /** Per entry: its room's index in `rooms`. */
    roomOf: Uint32Array;
    /** Per entry: where its body ends in `bodies`. */
    ends: Uint32Array;
    times: Float64Array;
    bodies: Uint8Array;
    lastMessageId: number;
  }
  | { type: "position"; id: number; room: string }
  /** No reply: see HistoryStore.release(). */
  | { type: "release"; id: number; room: string }
  | {
    type: "read";
    id: number;
    room: string;
    after: number;
    limit: number;
    epoch?: string;
  }
  | { type: "close"; id: number };

export type Reply =
  | { type: "opened"; id: number; lastMessageId: number }
  | {
    type: "appended";
    id: number;
    offsets: Float64Array;
    /** Per room index of the request: the room's epoch. */
    epochs: string[];
    /** How long the commit took, in ms. */
    ms: number;
  }
  | { type: "position"; id: number; epoch: string; offset: number }
  | { type: "rows"; id: number; rows: StoredMessage[] }
  | { type: "closed"; id: number }
  | { type: "error"; id: number; name: string; message: string };
