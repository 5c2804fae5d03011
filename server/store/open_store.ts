/**
 * Opens the history store the config names.
 */
import type { CoreConfig } from "../config.ts";
import type { HistoryStore } from "../rooms/history_store.ts";
import { createMemoryStore } from "./memory_store.ts";
import { openThreadedSqliteStore } from "./sqlite_thread.ts";

/**
 * Rejects with StoreOpenError (naming the file) when the data file is
 * unusable.
 */
export async function openStore(
  config: Readonly<CoreConfig>,
): Promise<HistoryStore> {
  const limits = { size: config.historySize, ttlMs: config.historyTtlMs };
  return config.store === "memory"
    ? createMemoryStore(limits)
    : await openThreadedSqliteStore({ ...limits, dataDir: config.dataDir });
}
