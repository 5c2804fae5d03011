/**
 * The life cycle every streaming handler shares: count it, watch its end
 * (client cancel, deadline, shutdown), run its cleanups exactly once, and
 * end it with one status.
 */
import type { ServiceError } from "@grpc/grpc-js";
import type { EventEmitter } from "node:events";
import { ChatError } from "../rooms/errors.ts";
import type { CallScope } from "./call_scope.ts";
import type { HandlerContext } from "./context.ts";
import { toServiceError } from "./status.ts";

export interface StreamControl {
  /** Registers a cleanup; runs at the end, in reverse order of registration. */
  defer(cleanup: () => void): void;
  /** Ends the call: OK without an error, else the error's status. Idempotent. */
  finish(err?: unknown): void;
}

/**
 * One streaming call's state. A class rather than closures: an idle
 * subscriber holds one of these for as long as it stays, and methods on a
 * prototype cost nothing per call (docs/perf-log.md, "Idle subscribers").
 */
class OpenStream implements StreamControl {
  readonly #ctx: HandlerContext;
  readonly #respond: (err: ServiceError | null) => void;
  readonly #scope: CallScope;
  /** Cleanups; one function is kept bare, a list only from the second. */
  #cleanups: (() => void) | (() => void)[] | undefined;
  #finished = false;

  constructor(
    call: EventEmitter,
    ctx: HandlerContext,
    respond: (err: ServiceError | null) => void,
  ) {
    this.#ctx = ctx;
    this.#respond = respond;
    ctx.hub.stats.callsStarted++;
    ctx.hub.stats.activeStreams++;
    // A transport error on the call (e.g. a failed write) ends it too.
    this.#scope = ctx.calls.enter(call, this, true);
  }

  defer(cleanup: () => void): void {
    const list = this.#cleanups;
    if (list === undefined) this.#cleanups = cleanup;
    else if (typeof list === "function") this.#cleanups = [list, cleanup];
    else list.push(cleanup);
  }

  finish(err?: unknown): void {
    if (this.#finished) return;
    this.#finished = true;
    const ctx = this.#ctx;
    ctx.hub.stats.activeStreams--;
    this.#scope.close();
    const list = this.#cleanups;
    this.#cleanups = undefined;
    if (typeof list === "function") this.#run(list);
    else if (list !== undefined) {
      for (let i = list.length - 1; i >= 0; i--) this.#run(list[i]);
    }
    // A cancelled call has no one to answer; grpc-js ignores writes to it.
    if (err instanceof ChatError && err.code === "cancelled") return;
    this.#respond(
      err === undefined
        ? null
        : toServiceError(err, (e) => ctx.log.error("handler failed", e)),
    );
  }

  #run(cleanup: () => void): void {
    try {
      cleanup();
    } catch (cleanupErr) {
      this.#ctx.log.error("stream cleanup failed", cleanupErr);
    }
  }
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
  return new OpenStream(call, ctx, respond);
}
