/**
 * The chat's room subscription, reopened after every drop: history on join,
 * resume from the last offset shown, and a refetch when the core skipped
 * messages for a slow client (the rules are {@link RoomCursor}'s).
 *
 * A drop after the join is reported and retried with backoff (`minRetryMs`
 * doubling to `maxRetryMs`); a refusal no retry can fix (a bad token, a bad
 * request) stops following. The first subscription's outcome is `joined`, so
 * a session can fail fast when the server is not there at all.
 *
 * @module
 */
import { status as Status } from "@grpc/grpc-js";
import type { Message } from "../gen/chat_pb.ts";
import { formatError } from "./format.ts";
import { describeResume, RoomCursor } from "./room_cursor.ts";
import { callEnded, type ChatClient } from "./rpc.ts";

/**
 * Codes that no retry can fix (the token, the user or the request is wrong):
 * a subscription that ends with one of them stops following.
 */
const FATAL = new Set<number>([
  Status.UNAUTHENTICATED,
  Status.PERMISSION_DENIED,
  Status.INVALID_ARGUMENT,
  Status.UNIMPLEMENTED,
]);

/** Where the follower reports. */
export interface FollowEvents {
  /** A message to show (the first join's welcome included). */
  show(message: Message): void;
  /** A line about the connection (lost, reconnected, a hole in history). */
  note(text: string): void;
  /** After each reconnection (not the first join, not a refetch). */
  resumed(): void;
  /** Following stopped for good: a refusal after the join. */
  fatal(reason: string): void;
}

/** What to follow and how patiently. */
export interface FollowOptions {
  room: string;
  user: string;
  /** Recent messages to ask for on the first join. */
  history: number;
  /** How long to wait for a welcome. */
  timeoutMs: number;
  minRetryMs: number;
  maxRetryMs: number;
  /** Aborting stops following. */
  signal: AbortSignal;
}

/** A running follower. */
export interface RoomFollower {
  /** Settles with the first subscription: welcomed, or why not. */
  joined: Promise<{ ok: true } | { ok: false; reason: string }>;
  /** Resolves once following has stopped (abort, refusal, failed join). */
  done: Promise<void>;
  /** Whether a subscription is live now. */
  connected(): boolean;
  /**
   * Whether everything up to the last welcome's offset has been shown: the
   * history asked for, or what a resume replays.
   */
  caughtUp(): boolean;
}

/** Starts following `opts.room`. */
export function followRoom(
  client: ChatClient,
  opts: FollowOptions,
  events: FollowEvents,
): RoomFollower {
  const cursor = new RoomCursor(opts.history);
  let connected = false;
  /** The last welcome's offset: the replay is done once it is shown. */
  let replayEnd: bigint | undefined;
  let current: ReturnType<ChatClient["subscribeMessages"]> | undefined;
  let settle!: (r: { ok: true } | { ok: false; reason: string }) => void;
  const joined = new Promise<{ ok: true } | { ok: false; reason: string }>(
    (r) => settle = r,
  );
  const onAbort = () => {
    current?.cancel();
    settle({ ok: false, reason: "interrupted" });
  };
  opts.signal.addEventListener("abort", onAbort, { once: true });

  const done = (async () => {
    let delay = opts.minRetryMs;
    let everJoined = false;
    let catchingUp = false;
    while (!opts.signal.aborted) {
      const call = client.subscribeMessages({
        room: opts.room,
        user: opts.user,
        ...cursor.request(),
      });
      current = call;
      const ended = callEnded(call);
      let welcomed = false;
      let refetch = false;
      let fatal = false;
      let reason = "the server ended the subscription";
      const noWelcome = setTimeout(() => {
        reason = "no welcome from server";
        call.cancel();
      }, opts.timeoutMs);
      try {
        for await (const m of call as AsyncIterable<Message>) {
          if (refetch) continue;
          if (!welcomed) {
            welcomed = true;
            clearTimeout(noWelcome);
            delay = opts.minRetryMs;
            connected = true;
            const outcome = cursor.welcome(m);
            replayEnd = m.offset;
            if (!everJoined) {
              everJoined = true;
              events.show(m);
              settle({ ok: true });
            } else if (!catchingUp) {
              events.note(
                `-- reconnected to ${opts.room}: ${describeResume(outcome)}`,
              );
              events.resumed();
            } else if (outcome.kind === "reset") {
              // History lost again while catching up: news, not a detail.
              events.note(
                `-- reconnected to ${opts.room}: ${describeResume(outcome)}`,
              );
            }
            catchingUp = false;
            // A new epoch: fetch what it holds already by resubscribing.
            if (outcome.kind === "reset" && outcome.replay > 0n) {
              refetch = true;
              call.cancel();
            }
            continue;
          }
          const verdict = cursor.accept(m);
          if (verdict === "duplicate") continue;
          if (verdict === "refetch") {
            // The core skipped messages for us (too slow): resubscribe from
            // the last one shown, at once; the rest of this stream is moot.
            refetch = true;
            call.cancel();
            continue;
          }
          if (verdict !== "show") {
            events.note(
              `-- ${verdict.gap} message(s) missing here (no longer in the room's history)`,
            );
          }
          events.show(m);
        }
      } catch (err) {
        if (reason !== "no welcome from server") reason = formatError(err);
        fatal = FATAL.has((err as { code?: number }).code ?? -1);
      }
      clearTimeout(noWelcome);
      connected = false;
      await ended;
      if (opts.signal.aborted) break;
      if (!everJoined) return settle({ ok: false, reason });
      if (fatal) return events.fatal(reason);
      if (refetch) {
        catchingUp = true;
        continue;
      }
      // A catch-up cut off is a lost connection like any: the next welcome
      // says how the resume went.
      catchingUp = false;
      events.note(
        `-- connection lost (${reason}); reconnecting in ${
          (delay / 1000).toFixed(1)
        } s`,
      );
      await sleep(delay, opts.signal);
      delay = Math.min(delay * 2, opts.maxRetryMs);
    }
  })().finally(() => opts.signal.removeEventListener("abort", onAbort));

  return {
    joined,
    done,
    connected: () => connected,
    caughtUp: () =>
      replayEnd !== undefined && cursor.position.offset >= replayEnd,
  };
}

/** Resolves after `ms`, or at once when `signal` aborts. */
export function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
  });
}
