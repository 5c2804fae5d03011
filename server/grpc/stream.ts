/**
 * The life cycle every streaming handler shares: count it, watch its
 * signal, run its cleanups exactly once, and end it with one status.
 */
import type { ServiceError } from "@grpc/grpc-js";
import type { EventEmitter } from "node:events";
import { ChatError } from "../rooms/errors.ts";
import type { HandlerContext } from "./context.ts";
import { toServiceError } from "./status.ts";

export interface StreamControl {
  readonly signal: AbortSignal;
  /** Registers a cleanup; runs at the end, in reverse order of registration. */
  defer(cleanup: () => void): void;
  /** Ends the call: OK without an error, else the error's status. Idempotent. */
  finish(err?: unknown): void;
}

/**
 * Opens a streaming call. `respond` sends the final status (or nothing when
 * the client already went away); it is called at most once.
 */
export function openStream(
  call: EventEmitter,
  ctx: HandlerContext,
  respond: (err: ServiceError | null) => void,
): StreamControl {
  const scope = ctx.calls.open(call);
  const cleanups: (() => void)[] = [];
  let finished = false;
  ctx.hub.stats.callsStarted++;
  ctx.hub.stats.activeStreams++;

  const finish = (err?: unknown) => {
    if (finished) return;
    finished = true;
    ctx.hub.stats.activeStreams--;
    scope.close();
    for (let i = cleanups.length - 1; i >= 0; i--) {
      try {
        cleanups[i]();
      } catch (cleanupErr) {
        ctx.log.error("stream cleanup failed", cleanupErr);
      }
    }
    // A cancelled call has no one to answer; grpc-js ignores writes to it.
    if (err instanceof ChatError && err.code === "cancelled") return;
    respond(
      err === undefined
        ? null
        : toServiceError(err, (e) => ctx.log.error("handler failed", e)),
    );
  };

  scope.signal.addEventListener("abort", () => finish(scope.signal.reason), {
    once: true,
  });
  // A transport error on the call (e.g. a failed write) ends it too.
  call.once("error", () => finish(new ChatError("cancelled", "stream error")));
  return { signal: scope.signal, defer: (fn) => cleanups.push(fn), finish };
}
