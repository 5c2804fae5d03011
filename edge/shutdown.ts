/**
 * The edge's stop, in two steps, for the calls that outlive an HTTP request:
 * the WebSocket bridge's. `Deno.serve`'s own shutdown waits for requests in
 * flight but closes every WebSocket at once, with no status frame; so before
 * it runs, the bridge is told to stop (`stopping`: no new socket, streams and
 * calls the core has not got end UNAVAILABLE, which a client can retry
 * elsewhere), then waits for the unary calls the core has (`hold()`): their
 * answer is worth waiting for, since a client told UNAVAILABLE for a message
 * the core stored would send it again. Whatever still runs at the end of the
 * grace ends UNAVAILABLE too (`ending`).
 *
 * @module
 */

export class EdgeShutdown {
  #stopping = new AbortController();
  #ending = new AbortController();
  #held = 0;
  #idle: (() => void) | undefined;
  #stopped: Promise<void> | undefined;

  /** Aborted when the edge begins to stop. */
  get stopping(): AbortSignal {
    return this.#stopping.signal;
  }

  /** Aborted when the grace is over: every call still running ends now. */
  get ending(): AbortSignal {
    return this.#ending.signal;
  }

  /** Holds the stop until the returned function runs (once is enough). */
  hold(): () => void {
    this.#held++;
    let held = true;
    return () => {
      if (!held) return;
      held = false;
      if (--this.#held === 0) this.#idle?.();
    };
  }

  /**
   * Begins stopping; resolves once nothing is held or `graceMs` has passed,
   * after `ending` was aborted. Called again, it returns the first call's
   * promise (with the first call's grace).
   */
  stop(graceMs: number): Promise<void> {
    return this.#stopped ??= this.#stop(graceMs);
  }

  async #stop(graceMs: number): Promise<void> {
    this.#stopping.abort();
    if (this.#held > 0) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      await new Promise<void>((resolve) => {
        this.#idle = resolve;
        timer = setTimeout(resolve, graceMs);
      });
      clearTimeout(timer);
      this.#idle = undefined;
    }
    this.#ending.abort();
  }
}
