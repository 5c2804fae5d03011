/**
 * Rooms by name, each a set of subscribers; publishing fans out to them.
 *
 * The payload type is opaque here: the transport publishes bytes it encoded
 * once, and every subscriber receives that same object. Empty rooms are
 * removed so that the map does not grow with every room name ever used.
 */
import { Subscriber } from "./subscriber.ts";

export class RoomRegistry<T> {
  #rooms = new Map<string, Set<Subscriber<T>>>();
  #subscribers = 0;

  /** Subscribers across all rooms. */
  get subscriberCount(): number {
    return this.#subscribers;
  }

  /** Rooms with at least one subscriber. */
  get roomCount(): number {
    return this.#rooms.size;
  }

  /** Subscribers of one room. */
  countIn(room: string): number {
    return this.#rooms.get(room)?.size ?? 0;
  }

  /** Items waiting in subscriber queues: all together, and the fullest one. */
  queueDepth(): { total: number; max: number } {
    let total = 0;
    let max = 0;
    for (const members of this.#rooms.values()) {
      for (const subscriber of members) {
        const queued = subscriber.queued;
        total += queued;
        if (queued > max) max = queued;
      }
    }
    return { total, max };
  }

  /**
   * Adds a subscriber to a room and returns the function that removes it.
   * The returned function is idempotent, so every exit path may call it.
   */
  join(room: string, subscriber: Subscriber<T>): () => void {
    let members = this.#rooms.get(room);
    if (!members) {
      members = new Set();
      this.#rooms.set(room, members);
    }
    members.add(subscriber);
    this.#subscribers++;
    let joined = true;
    return () => {
      if (!joined) return;
      joined = false;
      subscriber.close();
      const current = this.#rooms.get(room);
      if (current?.delete(subscriber)) {
        this.#subscribers--;
        if (current.size === 0) this.#rooms.delete(room);
      }
    };
  }

  /**
   * Delivers an item to every subscriber of a room; returns how many.
   * Never waits: slow subscribers queue or apply their policy.
   */
  publish(room: string, item: T): number {
    const members = this.#rooms.get(room);
    if (!members) return 0;
    // A disconnect-policy overflow may remove a member during this loop;
    // Set iteration tolerates deletion of entries not yet visited.
    for (const member of members) member.deliver(item);
    return members.size;
  }
}
