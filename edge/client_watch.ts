/**
 * Notices a browser going away, but only for calls that last.
 *
 * Reading `request.signal` under `Deno.serve` costs about 25 µs per request
 * (an AbortSignal and an async op waiting for the request's cancellation;
 * docs/perf-log.md), a third of a proxied unary call, which is answered in
 * well under a millisecond and never needed it. So a call is watched only
 * once it has run for at least one period: then its `request.signal` is
 * read, and that signal fires at once for a client that left before (Deno
 * keeps the request's cancellation). A client leaving is therefore noticed
 * within two periods instead of at once, and a short call costs an insert and a
 * removal.
 *
 * One timer per watch, running only while calls are in it.
 *
 * @example
 * ```ts
 * const watch = new ClientWatch();
 * const ctl = new AbortController();
 * const watched = watch.add(request, () => ctl.abort());
 * // ... the call ...
 * watch.remove(watched);
 * ```
 *
 * @module
 */

import { SlotList, type Slotted } from "../collections/slot_list.ts";

/** A call in the watch, as {@linkcode ClientWatch.add} returns it. */
export interface Watched extends Slotted {
  readonly request: Request;
  readonly onGone: () => void;
  signal?: AbortSignal;
}

/** Default period: a client leaving is noticed within 200 ms. */
export const CLIENT_WATCH_PERIOD_MS = 100;

/** See the module comment. */
export class ClientWatch {
  readonly #periodMs: number;
  // Calls younger than one period, and calls at least one period old.
  // SlotLists, not Sets: collections/slot_list.ts says why.
  #young = new SlotList<Watched>();
  #old = new SlotList<Watched>();
  #timer: ReturnType<typeof setTimeout> | undefined;

  constructor(periodMs = CLIENT_WATCH_PERIOD_MS) {
    this.#periodMs = periodMs;
  }

  /** Watches `request` from one period on; `onGone` runs once if it leaves. */
  add(request: Request, onGone: () => void): Watched {
    const w: Watched = { request, onGone, slot: -1 };
    this.#young.add(w);
    this.#timer ??= setTimeout(this.#tick, this.#periodMs);
    return w;
  }

  /** The call is over: stop watching it. */
  remove(w: Watched): void {
    if (w.signal !== undefined) {
      w.signal.removeEventListener("abort", w.onGone);
      return;
    }
    if (!this.#young.remove(w)) this.#old.remove(w);
    if (this.#young.size === 0 && this.#old.size === 0) this.#stop();
  }

  /** Calls not yet watched through their signal (for tests). */
  get pending(): number {
    return this.#young.size + this.#old.size;
  }

  readonly #tick = (): void => {
    this.#timer = undefined;
    for (const w of this.#old.values()) {
      const signal = w.signal = w.request.signal;
      if (signal.aborted) w.onGone();
      else signal.addEventListener("abort", w.onGone, { once: true });
    }
    const emptied = this.#old;
    emptied.clear();
    this.#old = this.#young;
    this.#young = emptied;
    if (this.#old.size > 0) {
      this.#timer = setTimeout(this.#tick, this.#periodMs);
    }
  };

  #stop(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }
}
