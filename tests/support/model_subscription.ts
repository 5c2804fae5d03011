/**
 * What the hub's model tests (server/rooms/hub_model_test.ts,
 * server/broker/shared_hub_model_test.ts) keep of each subscription.
 *
 * @module
 */
import type { ChatHub, Replay } from "../../server/rooms/hub.ts";
import type { ChatError } from "../../server/rooms/errors.ts";

/** An item a subscription received. */
export interface Item {
  epoch: string;
  offset: number;
  text?: string; // undefined for the welcome
}

/** One subscription of a client. */
export interface ModelSubscription {
  items: Item[];
  dropped: () => number;
  /** Resumes a paused sink; `fast`: it never pushes back again. */
  drain: (fast?: boolean) => void;
  leave: () => void;
  /** Cut off by the disconnect policy. */
  cut: boolean;
}

/**
 * Subscribes to room "r" with `replay`. A `slow` sink pushes back now and
 * then (`random`) until `drain(true)`; the disconnect policy sets `cut`.
 */
export function subscribeModel(
  hub: ChatHub<Item>,
  replay: Replay,
  slow: boolean,
  random: (n: number) => number,
  onError: (err: ChatError) => void,
): ModelSubscription {
  const sub = { items: [] as Item[], cut: false } as ModelSubscription;
  const s = hub.subscribe("r", {
    write(item) {
      sub.items.push(item);
      return !slow || random(3) > 0;
    },
  }, {
    ...replay,
    welcome: (p) => ({ epoch: p.epoch, offset: p.offset }),
    onOverflow: () => sub.cut = true,
    onError,
  });
  sub.dropped = () => s.subscriber.dropped;
  sub.drain = (fast = false) => {
    if (fast) slow = false;
    if (s.subscriber.paused) s.subscriber.resume();
  };
  sub.leave = () => s.leave();
  return sub;
}
