/**
 * The chat domain: rooms, message ids, subscriptions and their counters.
 *
 * Transport-agnostic: `T` is whatever the transport hands to subscribers
 * (for gRPC, one encoded message shared by all of them).
 */
import { RoomRegistry } from "./room_registry.ts";
import { ChatStats } from "./stats.ts";
import {
  type Sink,
  type SlowConsumerPolicy,
  Subscriber,
} from "./subscriber.ts";

export interface HubOptions {
  /** Items a paused subscriber may queue (the seed's channel size: 100). */
  queueCapacity: number;
  policy: SlowConsumerPolicy;
}

export interface Subscription<T> {
  readonly subscriber: Subscriber<T>;
  /** Leaves the room. Idempotent; call it on every exit path. */
  leave(): void;
}

export class ChatHub<T> {
  readonly stats: ChatStats = new ChatStats();
  #rooms = new RoomRegistry<T>();
  #options: HubOptions;
  #lastId = 0;

  constructor(options: HubOptions) {
    this.#options = options;
  }

  get subscriberCount(): number {
    return this.#rooms.subscriberCount;
  }

  get roomCount(): number {
    return this.#rooms.roomCount;
  }

  /** Messages waiting in subscriber queues (read at metrics scrapes). */
  queueDepth(): { total: number; max: number } {
    return this.#rooms.queueDepth();
  }

  countIn(room: string): number {
    return this.#rooms.countIn(room);
  }

  /** The seed's ids: `msg_1`, `msg_2`, ... unique for this process. */
  nextMessageId(): string {
    return `msg_${++this.#lastId}`;
  }

  /** Fans an item out to a room; returns the number of subscribers reached. */
  publish(room: string, item: T): number {
    const reached = this.#rooms.publish(room, item);
    this.stats.messagesPublished++;
    this.stats.deliveries += reached;
    return reached;
  }

  /**
   * Like `publish()`, but builds the item only when the room has someone in
   * it: an upload to an empty room then costs no encoding at all.
   */
  publishWith(room: string, make: () => T): number {
    if (this.#rooms.countIn(room) > 0) return this.publish(room, make());
    this.stats.messagesPublished++;
    return 0;
  }

  /**
   * Joins a room. `onOverflow` runs (at most once) when the subscriber is
   * cut off by the "disconnect" policy; the caller ends its stream then.
   */
  subscribe(
    room: string,
    sink: Sink<T>,
    onOverflow: () => void,
  ): Subscription<T> {
    const stats = this.stats;
    const subscriber = new Subscriber<T>(sink, {
      capacity: this.#options.queueCapacity,
      policy: this.#options.policy,
      onDrop: () => stats.dropped++,
      onOverflow: () => {
        stats.slowDisconnects++;
        leave();
        // Deferred so that the stream is not ended inside a publish loop.
        queueMicrotask(onOverflow);
      },
    });
    const leave = this.#rooms.join(room, subscriber);
    return { subscriber, leave };
  }
}
