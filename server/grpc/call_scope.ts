/**
 * One end signal per call, fired by client cancel, deadline or shutdown.
 *
 * grpc-js reports client cancel and deadline as the call's 'cancelled'
 * event (also emitted after a normal end, which is harmless here because
 * every reaction is idempotent). Shutdown ends every open scope with an
 * UNAVAILABLE ChatError so that handlers end their streams with a status.
 *
 * Why a callback and not an AbortController: a scope lives as long as its
 * call, and an idle subscriber is mostly its scope. An AbortController with
 * its AbortSignal, the signal's listener table and the abort listener cost
 * about 600 bytes per call in Deno; a scope here is one small object
 * (docs/perf-log.md, "Idle subscribers").
 */
import type { EventEmitter } from "node:events";
import { ChatError } from "../rooms/errors.ts";
import { SlotList, type Slotted } from "../../collections/slot_list.ts";

/** What a scope ends: `finish(reason)` runs once. */
export interface ScopeOwner {
  finish(reason: ChatError): void;
}

export interface CallScope {
  /** Forgets the scope; call once the call has ended. Idempotent. */
  close(): void;
}

const CANCELLED = "call cancelled by the client";
const STREAM_ERROR = "stream error";

/** One open call: its end callback, until closed. */
class Scope implements CallScope, Slotted {
  /** Its place in `CallScopes.open`. */
  slot = -1;
  #ended = false;

  constructor(
    readonly scopes: CallScopes,
    readonly call: EventEmitter,
    readonly owner: ScopeOwner,
  ) {}

  /** Fires the end callback once, with `reason`. */
  end(reason: ChatError): void {
    if (this.#ended) return;
    this.#ended = true;
    this.close();
    this.owner.finish(reason);
  }

  /** The call's 'cancelled' listener; `this` is the call. */
  static cancelled(this: EventEmitter & { [SCOPE]?: Scope }): void {
    this[SCOPE]?.end(new ChatError("cancelled", CANCELLED));
  }

  /**
   * The call's 'error' listener (with `endOnError`); `this` is the call. It
   * stays after the scope closed, so that a status the handler emits as
   * 'error' never finds an emitter without listeners.
   */
  static errored(this: EventEmitter & { [SCOPE]?: Scope }): void {
    this[SCOPE]?.end(new ChatError("cancelled", STREAM_ERROR));
  }

  close(): void {
    if (!this.scopes.open.remove(this)) return;
    this.call.off("cancelled", Scope.cancelled);
    (this.call as { [SCOPE]?: Scope })[SCOPE] = undefined;
  }
}

/** Where a call keeps its scope, so one shared listener finds it. */
const SCOPE = Symbol("callScope");

export class CallScopes {
  /**
   * Open scopes; read by {@linkcode Scope}. A SlotList, not a Set: streams
   * come and go all the time (collections/slot_list.ts says why).
   */
  readonly open: SlotList<Scope> = new SlotList();

  get size(): number {
    return this.open.size;
  }

  /**
   * Opens a scope tied to a grpc-js call's 'cancelled' event:
   * `owner.finish()` runs once, on client cancel, deadline or
   * {@linkcode abortAll}, unless the scope was closed first. One scope per call. With `endOnError`, a
   * transport error on the call (e.g. a failed write) ends it too, as
   * CANCELLED ("stream error").
   */
  enter(
    call: EventEmitter,
    owner: ScopeOwner,
    endOnError = false,
  ): CallScope {
    const scope = new Scope(this, call, owner);
    this.open.add(scope);
    (call as { [SCOPE]?: Scope })[SCOPE] = scope;
    if (endOnError) call.on("error", Scope.errored);
    // One listener function shared by every call (no closure, no once()
    // wrapper); it finds the scope on the call.
    call.on("cancelled", Scope.cancelled);
    return scope;
  }

  /** Ends every open scope, e.g. at shutdown. */
  abortAll(reason: ChatError): void {
    for (const scope of this.open.values()) scope.end(reason);
  }
}
