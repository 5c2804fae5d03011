/**
 * The publish of a keyed post's first try, for SendMessage and the streamed
 * posts alike: to the hub, with its idempotency scope for a store that
 * checks keys itself (`HistoryStore.checksKeys`); `done` gets the post's
 * result, or, when that store found the scope already (another core stored
 * it first), the first's, as a repeat.
 */
import type { PublishDone } from "../rooms/idempotency.ts";
import type { HandlerContext } from "./context.ts";

/** Publishes `body` to `room` as the post of `scope` with `id` and `timeMs`. */
export function publishKeyed(
  ctx: HandlerContext,
  room: string,
  body: Uint8Array,
  scope: string,
  id: string,
  timeMs: number,
  done: PublishDone,
): void {
  const key = ctx.hub.store.checksKeys
    ? { scope, id, timeMs, windowMs: ctx.config.idempotencyWindowMs }
    : undefined;
  ctx.hub.publish(room, body, (err, stored) => {
    // The index keeps the result for the window: the id, time and offset
    // only, never the message's bytes.
    if (err) done(err);
    else if (stored!.repeatOf !== undefined) {
      const first = stored!.repeatOf;
      done(undefined, { ...first, offset: stored!.offset }, true);
    } else done(undefined, { id, timeMs, offset: stored!.offset });
  }, key);
}
