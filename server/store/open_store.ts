/**
 * Opens the history store the config names: the log store (the default),
 * SQLite, or memory.
 *
 * SQLite runs on a worker thread (sqlite_thread.ts) when the process may use
 * more than one CPU, so commits run beside the event loop. With a single
 * CPU (a `taskset` pin, a one-core machine) the worker cannot run beside it:
 * its round trip (two postMessages, two thread wake-ups on the same core)
 * then only adds cost, about three times the commit itself (measured in
 * docs/perf-log.md, 2026-12-06), so the store runs in the event loop's
 * thread instead. Either way a publish is acknowledged only after COMMIT.
 * The log store's commit is one `write` (~2 µs): always in the event loop's
 * thread.
 *
 * The log store first imports a `chat.sqlite` it finds beside an empty log
 * (log_import.ts): an upgrade in place keeps its history.
 */
import type { CoreConfig } from "../config.ts";
import type { HistoryStore } from "../rooms/history_store.ts";
import { importSqlite } from "./log_import.ts";
import { lockDir, makeDataDir } from "./log_files.ts";
import { openLogStore } from "./log_store.ts";
import { createMemoryStore } from "./memory_store.ts";
import { openSqliteStore } from "./sqlite_store.ts";
import { openThreadedSqliteStore } from "./sqlite_thread.ts";

/**
 * Rejects with StoreOpenError (naming the file) when the data directory or
 * a file in it is unusable. `cpus` (default: the CPUs this process may run
 * on) picks where SQLite runs: on a worker thread when more than one.
 * `warn` hears the log store's warnings (a torn tail cut off, an import, a
 * failed compaction): the core's logger, so that they come out in its
 * format (default: plain lines on stderr).
 */
export async function openStore(
  config: Readonly<CoreConfig>,
  cpus: number = navigator.hardwareConcurrency,
  warn?: (message: string) => void,
): Promise<HistoryStore> {
  const limits = {
    size: config.historySize,
    ttlMs: config.historyTtlMs,
    maxRooms: config.historyMaxRooms,
  };
  // Byte bounds: for the stores that hold every retained body in memory.
  const inMemory = {
    ...limits,
    bytes: config.historyBytes,
    maxBytes: config.historyMaxBytes,
  };
  if (config.store === "memory") return createMemoryStore(inMemory);
  const options = { ...limits, dataDir: config.dataDir };
  if (config.store === "log") {
    // A directory upgraded from --store sqlite: its history first.
    await importSqlite({ ...options, warn });
    return openLogStore({ ...inMemory, dataDir: config.dataDir, warn });
  }
  return await lockedSqlite(
    config.dataDir,
    () =>
      cpus > 1 ? openThreadedSqliteStore(options) : openSqliteStore(options),
  );
}

/**
 * Opens the SQLite store holding the directory's lock (`history.lock`, the
 * log store's) until it is closed: one core per data directory, whichever
 * store. A second SQLite core beside the first would run on the offsets,
 * room rows and message ids it read at its start (every post to a room the
 * other wrote failing, `msg_N` handed out twice), and a log core would
 * import `chat.sqlite` from under it (renaming the file it goes on writing).
 */
async function lockedSqlite(
  dir: string,
  open: () => HistoryStore | Promise<HistoryStore>,
): Promise<HistoryStore> {
  makeDataDir(dir);
  const lock = lockDir(dir);
  let store: HistoryStore;
  try {
    store = await open();
  } catch (err) {
    lock.close();
    throw err;
  }
  let locked = true;
  const unlock = () => {
    if (!locked) return;
    locked = false;
    lock.close();
  };
  const close = store.close.bind(store);
  store.close = () => {
    let done: void | Promise<void>;
    try {
      done = close();
    } catch (err) {
      unlock();
      throw err;
    }
    if (done instanceof Promise) return done.finally(unlock);
    unlock();
  };
  return store;
}
