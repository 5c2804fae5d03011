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

/** A cleanup: a function, or an object that cleans up when disposed. */
export type Cleanup = (() => void) | Disposable;

export interface StreamControl {
  /** Registers a cleanup; runs at the end, in reverse order of registration. */
  defer(cleanup: Cleanup): void;
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
  readonly #call: WritableCall;
  readonly #respond: ((err: ServiceError | null) => void) | undefined;
  readonly #scope: CallScope;
  /** Cleanups; one is kept bare, a list only from the second. */
  #cleanups: Cleanup | Cleanup[] | undefined;
  #finished = false;

  constructor(
    call: WritableCall,
    ctx: HandlerContext,
    respond: ((err: ServiceError | null) => void) | undefined,
  ) {
    this.#call = call;
    this.#ctx = ctx;
    this.#respond = respond;
    ctx.hub.stats.callsStarted++;
    ctx.hub.stats.activeStreams++;
    // A transport error on the call (e.g. a failed write) ends it too.
    this.#scope = ctx.calls.enter(call, this, true);
  }

  defer(cleanup: Cleanup): void {
    const list = this.#cleanups;
    if (list === undefined) this.#cleanups = cleanup;
    else if (!Array.isArray(list)) this.#cleanups = [list, cleanup];
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
    if (Array.isArray(list)) {
      for (let i = list.length - 1; i >= 0; i--) this.#run(list[i]);
    } else if (list !== undefined) this.#run(list);
    // A cancelled call has no one to answer; grpc-js ignores writes to it.
    if (err instanceof ChatError && err.code === "cancelled") return;
    const status = err === undefined
      ? null
      : toServiceError(err, (e) => ctx.log.error("handler failed", e));
    if (this.#respond !== undefined) this.#respond(status);
    else if (status !== null) this.#call.emit("error", status);
    else this.#call.end();
  }

  #run(cleanup: Cleanup): void {
    try {
      if (typeof cleanup === "function") cleanup();
      else cleanup[Symbol.dispose]();
    } catch (cleanupErr) {
      this.#ctx.log.error("stream cleanup failed", cleanupErr);
    }
  }
}

/** A call that ends with `end()` or a status given as its 'error' event. */
interface WritableCall extends EventEmitter {
  end(): unknown;
}

/**
 * Opens a streaming call. `respond` sends the final status (or nothing when
 * the client already went away); it is called at most once. Without it, a
 * status is the call's 'error' event and OK is `call.end()`, as grpc-js's
 * writable calls take them.
 */
export function openStream(
  call: WritableCall,
  ctx: HandlerContext,
  respond?: (err: ServiceError | null) => void,
): StreamControl;
export function openStream(
  call: EventEmitter,
  ctx: HandlerContext,
  respond: (err: ServiceError | null) => void,
): StreamControl;
export function openStream(
  call: EventEmitter,
  ctx: HandlerContext,
  respond?: (err: ServiceError | null) => void,
): StreamControl {
  // Without `respond`, the first overload says the call can end().
  return new OpenStream(call as WritableCall, ctx, respond);
}
