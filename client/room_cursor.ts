/**
 * Where a client is in a room's history: the epoch and the last offset shown,
 * so that a subscription reopened after a drop resumes with no gap and no
 * duplicate (docs/history.md has the server's side of the contract).
 *
 * Shared by the CLI chat and the page; plain TypeScript over the generated
 * message shapes, no transport. The first subscription asks for the room's
 * recent `history`; every later one asks for `epoch` + `since_offset`. The
 * welcome tells how it went: same epoch means the server replays every message
 * after our offset (up to the welcome's offset, then live); another epoch means
 * the room's history was lost on the server and what was missed is unknown.
 * Messages at or below the last offset shown are dropped as duplicates.
 *
 * @example
 * ```ts
 * const cursor = new RoomCursor(20);
 * const req = { room, user, ...cursor.request() };
 * // first message of the stream:
 * const joined = cursor.welcome(welcome); // { kind: "joined", ... }
 * // then for each message:
 * if (cursor.accept(message) !== "duplicate") render(message);
 * ```
 *
 * @module
 */

/** The fields of `chat.Message` the cursor reads. */
export interface Positioned {
  offset: bigint;
  epoch: string;
}

/** What a subscription's welcome meant. */
export type WelcomeOutcome =
  /** First join: up to `history` recent messages follow. */
  | { kind: "joined"; offset: bigint; history: number }
  /** Same epoch: `missed` messages follow (0: nothing was missed). */
  | { kind: "resumed"; missed: bigint }
  /**
   * The server's history epoch changed: what was missed of the old one is
   * unknown. `replay`: how many of the new epoch's last messages (up to
   * `history`) to fetch by resubscribing at once (`request()` asks for them).
   */
  | { kind: "reset"; replay: bigint }
  /** The server keeps no history (no epoch): what was missed is lost. */
  | { kind: "no-history" };

/**
 * What to do with a message: show it; drop it as already shown; `refetch`:
 * drop it and resubscribe from the cursor's position at once (messages before
 * it were skipped, e.g. dropped for a slow subscriber, and the server's
 * history may still have them); or show it and say that `gap` messages before
 * it are not coming (no longer in the room's history).
 */
export type Verdict = "show" | "duplicate" | "refetch" | { gap: bigint };

/** A client's position in one room. */
export class RoomCursor {
  #history: number;
  #epoch = "";
  #last = 0n;
  #started = false;
  /** Whether `#last` is exact (false right after a first join with history). */
  #exact = false;
  /** The position a replay was last asked from: a gap there is final. */
  #replayedFrom = -1n;

  /** `history`: how many recent messages to ask for on the first join. */
  constructor(history: number) {
    this.#history = history;
  }

  /** The room's epoch and last offset shown ("" and 0 before the first welcome). */
  get position(): { epoch: string; offset: bigint } {
    return { epoch: this.#epoch, offset: this.#last };
  }

  /** The history fields of the next SubscribeRequest. */
  request(): { history: number; epoch: string; sinceOffset: bigint } {
    if (this.#started && this.#epoch !== "") {
      return { history: 0, epoch: this.#epoch, sinceOffset: this.#last };
    }
    return {
      history: this.#started ? 0 : this.#history,
      epoch: "",
      sinceOffset: 0n,
    };
  }

  /** Reads a subscription's welcome (its first message). */
  welcome(w: Positioned): WelcomeOutcome {
    const first = !this.#started;
    this.#started = true;
    if (w.epoch === "") {
      this.#epoch = "";
      this.#last = 0n;
      return first
        ? { kind: "joined", offset: 0n, history: 0 }
        : { kind: "no-history" };
    }
    if (first) {
      this.#epoch = w.epoch;
      const back = BigInt(this.#history);
      this.#last = w.offset > back ? w.offset - back : 0n;
      // Fewer than `history` may be retained: no gap until a first message.
      this.#exact = back === 0n;
      return { kind: "joined", offset: w.offset, history: this.#history };
    }
    if (w.epoch !== this.#epoch) {
      // Offsets of the new epoch start over; nothing of the old one replays,
      // and the server sends the new one's only from now on. What it holds
      // already (sent while we were away, say) is asked for as on a first
      // join: the next request resumes from `history` before its end.
      this.#epoch = w.epoch;
      const back = BigInt(this.#history);
      this.#last = w.offset > back ? w.offset - back : 0n;
      this.#exact = false;
      return { kind: "reset", replay: w.offset - this.#last };
    }
    // This subscription replays from #last: a gap now means trimmed.
    this.#replayedFrom = this.#last;
    return {
      kind: "resumed",
      missed: w.offset > this.#last ? w.offset - this.#last : 0n,
    };
  }

  /**
   * Whether to show a message after the welcome. Messages outside the room's
   * sequence (offset 0: echoes, notices) always show.
   */
  accept(m: Positioned): Verdict {
    if (m.offset === 0n || this.#epoch === "") return "show";
    if (m.epoch !== this.#epoch) {
      this.#epoch = m.epoch;
      this.#last = m.offset;
      this.#exact = true;
      return "show";
    }
    if (m.offset <= this.#last) return "duplicate";
    const missed = m.offset - this.#last - 1n;
    const gap = this.#exact && missed > 0n;
    // A first gap while live: ask the server to replay it before going on.
    if (gap && this.#replayedFrom !== this.#last) return "refetch";
    this.#last = m.offset;
    this.#exact = true;
    return gap ? { gap: missed } : "show";
  }
}

/** How a resume went, in words both clients show after "Reconnected". */
export function describeResume(outcome: WelcomeOutcome): string {
  switch (outcome.kind) {
    case "resumed":
      return outcome.missed === 0n
        ? "nothing missed"
        : `${outcome.missed} missed message(s) follow`;
    case "reset":
      return outcome.replay === 0n
        ? "the room's history started over on the server: messages sent meanwhile may be missing"
        : `the room's history started over on the server (messages sent meanwhile may be missing); up to ${outcome.replay} recent message(s) follow`;
    case "no-history":
      return "this server keeps no history: messages sent meanwhile are missing";
    default:
      return "joined";
  }
}
