/**
 * What the hub's model tests (server/rooms/hub_model_test.ts,
 * server/broker/shared_hub_model_test.ts) keep of each subscription.
 *
 * @module
 */

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
