/**
 * One joined room: the subscription kept open across drops, resuming from the
 * last offset shown, and the lines that tell the user what happened.
 *
 * The first subscription asks for the room's recent history; after a drop
 * (core restart, edge deploy, network) the next one asks for everything after
 * the last offset shown in the same epoch, so the list continues with no gap
 * and no duplicate ({@link RoomCursor} is shared with the CLI chat). The page
 * says how the resume went: nothing missed, N missed messages replayed, or
 * history lost on the server.
 *
 * @module
 */
import { Code, ConnectError } from "@connectrpc/connect";
import { describeResume, RoomCursor } from "../client/room_cursor.ts";
import { type PageTokenSource, tokenRefusals } from "./auth.ts";
import type { PageGate } from "./page_gate.ts";
import type { ChatClient } from "./rpc.ts";
import { keepStreaming } from "./resilient_stream.ts";
import type { RoomView } from "./room_view.ts";

/** Recent messages shown on join. */
export const HISTORY = 50;

/** Refusals that reconnecting cannot fix: the session stops and says why. */
const FATAL = new Set([
  Code.Unauthenticated,
  Code.PermissionDenied,
  Code.InvalidArgument,
]);

/** What a room session reports to the page. */
export interface RoomSessionOptions {
  client: ChatClient;
  view: RoomView;
  user: string;
  room: string;
  signal: AbortSignal;
  /** Pauses the subscription while the page is hidden or cached. */
  gate?: PageGate;
  /**
   * The page's token: a refusal (UNAUTHENTICATED) of one the page has
   * replaced since, or is renewing, is retried (with the usual backoff), not
   * final (`tokenRefusals()`).
   */
  token?: PageTokenSource;
  /** The status line: text and one of idle/connecting/live/retrying. */
  status(text: string, kind: string): void;
  /** Called after each resume, to retry what was not sent meanwhile. */
  onResume(): void;
}

/** Runs until `signal` aborts. */
export function startRoomSession(o: RoomSessionOptions): Promise<void> {
  const { room, user, view } = o;
  const cursor = new RoomCursor(HISTORY);
  let welcomed = false;
  let lost = false;
  /** Paused while the page was hidden (no "Connection lost" line for that). */
  let away = false;
  let catchingUp = false;
  const refusals = tokenRefusals(o.token);
  return keepStreaming({
    signal: o.signal,
    gate: o.gate,
    fatal: (err) => {
      const code = ConnectError.from(err).code;
      if (code === Code.Unauthenticated && !refusals.final()) return false;
      return FATAL.has(code);
    },
    open: (signal) => {
      refusals.opened();
      welcomed = false;
      return o.client.subscribeMessages(
        { room, user, ...cursor.request() },
        { signal },
      );
    },
    onMessage: (message) => {
      if (!welcomed) {
        welcomed = true;
        const outcome = cursor.welcome(message);
        if (outcome.kind === "joined") view.add(message, user);
        else if (!catchingUp || outcome.kind === "reset") {
          // A catch-up's own resume is a detail, unless history was lost
          // again meanwhile.
          view.note(`Reconnected: ${describeResume(outcome)}.`);
        }
        catchingUp = false;
        if (lost || away) o.onResume();
        lost = away = false;
        // A new epoch: fetch what it holds already by resubscribing.
        if (outcome.kind === "reset" && outcome.replay > 0n) {
          catchingUp = true;
          return "reopen";
        }
        return;
      }
      const verdict = cursor.accept(message);
      if (verdict === "duplicate") return;
      // Skipped for a slow page: resubscribe from the last message shown.
      if (verdict === "refetch") {
        catchingUp = true;
        return "reopen";
      }
      if (verdict !== "show") {
        view.note(
          `${verdict.gap} message(s) missing here: no longer in the room's history.`,
        );
      }
      view.add(message, user);
    },
    onState: (state) => {
      if (state.kind === "live") {
        o.status(`Live in #${room} as ${user}`, "live");
      } else if (state.kind === "retrying") {
        // A catch-up cut off is a lost connection like any: the next
        // welcome says how the resume went.
        catchingUp = false;
        o.status(
          `Reconnecting in ${(state.inMs / 1000).toFixed(1)} s…`,
          "retrying",
        );
        if (!lost) {
          view.note(`Connection lost (${state.reason}); reconnecting…`);
        }
        lost = true;
      } else if (state.kind === "paused") {
        // Back on screen, the next welcome says what was missed meanwhile,
        // a catch-up's included (it was cut off).
        catchingUp = false;
        o.status(`Paused while the page is hidden`, "retrying");
        away = true;
      } else if (state.kind === "failed") {
        o.status(`Not joined: refused`, "retrying");
        view.note(`The server refused the subscription: ${state.reason}`);
      } else if (lost || away) {
        o.status(`Reconnecting to #${room}…`, "retrying");
      } else {
        o.status(`Joining #${room}…`, "connecting");
      }
    },
  });
}
