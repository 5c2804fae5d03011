/**
 * Connects a message store to the core's health and metrics: its state
 * becomes a {@linkcode HealthSource} ("store"), its commit durations the
 * `chat_store_operation_seconds{operation="commit"}` histogram.
 *
 * Written against the history store's shape (`status().state` and one
 * `onCommit(ms, ok)` listener, server/rooms/history_store.ts on the `store`
 * branch), structurally, so that wiring it in is one call:
 *
 * @example
 * ```ts
 * const source = observeStore(store, core.storeLatency);
 * ```
 */
import type { HealthSource } from "./health.ts";
import type { StoreLatency } from "./metrics.ts";

/** What the core reads from a store. */
export interface ObservedStore {
  status(): { readonly state: "ok" | "down" };
  /** Called after every commit with its duration in ms; one listener. */
  onCommit?: (ms: number, ok: boolean) => void;
  /** Called when the state changes without a commit (a broker's connection). */
  onStateChange?: () => void;
}

/**
 * Takes the store's commit listener: every commit is timed into `latency`,
 * and health watchers hear of it only when the state flips.
 */
export function observeStore(
  store: ObservedStore,
  latency: StoreLatency,
): HealthSource {
  const watchers = new Set<() => void>();
  let last = store.status().state;
  const flipped = () => {
    const now = store.status().state;
    if (now === last) return;
    last = now;
    for (const watcher of watchers) watcher();
  };
  store.onCommit = (ms) => {
    latency.observe("commit", ms / 1000);
    flipped();
  };
  store.onStateChange = flipped;
  return {
    name: "store",
    serving: () => store.status().state === "ok",
    watch(onChange) {
      watchers.add(onChange);
      return () => watchers.delete(onChange);
    },
  };
}
