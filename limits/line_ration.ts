/**
 * Log lines of one kind, at most `perSecond` a second: lines a peer causes
 * (a refused request, a malformed header) come as fast as it sends them,
 * and a line each would let one peer fill the log. Past the ration the
 * lines are counted, and `summarize(n)` is called once when that second
 * ends (or at `close()`), whether or not another line comes; its timer
 * keeps no process alive.
 *
 * @example
 * ```ts
 * const ration = new LineRation(20, (n) => console.log(`${n} more`));
 * if (ration.take()) console.log("refused a call");
 * ```
 *
 * @module
 */
export class LineRation {
  readonly #perSecond: number;
  readonly #summarize: (unlogged: number) => void;
  readonly #now: () => number;
  /** The second lines are counted in, and how many went out in it. */
  #second = 0;
  #lines = 0;
  #unlogged = 0;
  #timer: ReturnType<typeof setTimeout> | undefined;

  /** `now`: the wall clock in ms (tests pass their own); default Date.now. */
  constructor(
    perSecond: number,
    summarize: (unlogged: number) => void,
    now: () => number = Date.now,
  ) {
    this.#perSecond = perSecond;
    this.#summarize = summarize;
    this.#now = now;
  }

  /** Whether a line may go out now; if not, it counts for the summary. */
  take(): boolean {
    const second = Math.floor(this.#now() / 1000);
    if (second !== this.#second) {
      this.#flush();
      this.#second = second;
      this.#lines = 0;
    }
    if (this.#lines < this.#perSecond) {
      this.#lines++;
      return true;
    }
    if (this.#unlogged++ === 0) {
      const timer = setTimeout(this.#due, 1000 - this.#now() % 1000 + 1);
      Deno.unrefTimer(timer);
      this.#timer = timer;
    }
    return false;
  }

  /** Sums up what is pending now and stops the timer. */
  close(): void {
    this.#flush();
  }

  readonly #due = (): void => {
    this.#timer = undefined;
    this.#flush();
  };

  #flush(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    const n = this.#unlogged;
    if (n === 0) return;
    this.#unlogged = 0;
    this.#summarize(n);
  }
}
