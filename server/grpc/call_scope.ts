/**
 * One AbortSignal per call, fired by client cancel, deadline or shutdown.
 *
 * grpc-js reports client cancel and deadline as the call's 'cancelled'
 * event (also emitted after a normal end, which is harmless here because
 * every reaction is idempotent). Shutdown aborts every open scope with an
 * UNAVAILABLE ChatError so that handlers end their streams with a status.
 */
import type { EventEmitter } from "node:events";
import { ChatError } from "../rooms/errors.ts";

export interface CallScope {
  readonly signal: AbortSignal;
  /** Forgets the scope; call once the call has ended. Idempotent. */
  close(): void;
}

export class CallScopes {
  #open = new Set<AbortController>();

  get size(): number {
    return this.#open.size;
  }

  /** Opens a scope tied to a grpc-js call's 'cancelled' event. */
  open(call: EventEmitter): CallScope {
    const controller = new AbortController();
    this.#open.add(controller);
    const onCancelled = () => {
      controller.abort(
        new ChatError("cancelled", "call cancelled by the client"),
      );
    };
    call.once("cancelled", onCancelled);
    return {
      signal: controller.signal,
      close: () => {
        this.#open.delete(controller);
        call.off("cancelled", onCancelled);
      },
    };
  }

  /** Aborts every open scope, e.g. at shutdown. */
  abortAll(reason: ChatError): void {
    for (const controller of this.#open) controller.abort(reason);
  }
}
