/**
 * Whether the page is on screen, for the streams that live as long as it.
 *
 * When the user navigates away, the browser may keep the page, frozen, in its
 * back/forward cache and show it again on "Back". Its streams must end at
 * `pagehide` (the core drops the subscribers at once; Chromium closes a
 * WebSocket still open as it caches the page, which the page would see only
 * when shown again, as an error) and open again when the page is shown,
 * resuming where they stopped. A gate is that switch: `visit` aborts when the
 * page is hidden, `shown()` resolves when it is back. The page decides when it opens again
 * (after renewing a development token that may have expired meanwhile).
 *
 * @module
 */

/** Open while the page is shown; closed while it is hidden or cached. */
export class PageGate {
  #visit = new AbortController();
  #waiting: (() => void)[] = [];

  /** Aborts when the page is next hidden; a new one for each visit. */
  get visit(): AbortSignal {
    return this.#visit.signal;
  }

  /** True while the page is shown: its visit has not ended. */
  get open(): boolean {
    return !this.#visit.signal.aborted;
  }

  /** The page is hidden (`pagehide`): the visit's streams end. */
  close(): void {
    if (!this.open) return;
    this.#visit.abort(new Error("the page was hidden"));
  }

  /** The page is shown again: a new visit starts and waiting streams reopen. */
  reopen(): void {
    if (this.open) return;
    this.#visit = new AbortController();
    const waiting = this.#waiting;
    this.#waiting = [];
    for (const resume of waiting) resume();
  }

  /** Resolves when the page is shown (now, if it is), or when `signal` aborts. */
  shown(signal: AbortSignal): Promise<void> {
    if (this.open || signal.aborted) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        signal.removeEventListener("abort", done);
        const at = this.#waiting.indexOf(done);
        if (at >= 0) this.#waiting.splice(at, 1);
        resolve();
      };
      this.#waiting.push(done);
      signal.addEventListener("abort", done, { once: true });
    });
  }
}
