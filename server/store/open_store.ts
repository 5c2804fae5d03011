/**
 * Opens the history store the config names.
 */
import type { CoreConfig } from "../config.ts";
import type { HistoryStore } from "../rooms/history_store.ts";
import { createMemoryStore } from "./memory_store.ts";
import { openSqliteStore } from "./sqlite_store.ts";

/** Throws StoreOpenError (naming the file) when the data file is unusable. */
export function openStore(config: Readonly<CoreConfig>): HistoryStore {
  const limits = { size: config.historySize, ttlMs: config.historyTtlMs };
  return config.store === "memory"
    ? createMemoryStore(limits)
    : openSqliteStore({ ...limits, dataDir: config.dataDir });
}
