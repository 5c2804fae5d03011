/**
 * Who is in a room (`--presence`): users with at least one subscription,
 * and how many each has.
 *
 * This core's own count is kept here; a registry shared by several cores
 * (server/broker/redis_presence.ts) adds the other cores' counts behind the
 * same interface.
 */

/** One user in a room, over every core. */
export interface PresenceEntry {
  readonly user: string;
  /** Subscriptions the user has open in the room. */
  readonly connections: number;
}

/** Presence as the handlers use it. */
export interface Presence {
  /** A subscription of `user` to `room` started. */
  join(room: string, user: string): void;
  /** That subscription ended. */
  leave(room: string, user: string): void;
  /** Who is in `room` now, sorted by user. */
  list(room: string): Promise<PresenceEntry[]>;
  close(): Promise<void>;
}

/** This core's subscriptions per room and user. */
export class LocalPresence implements Presence {
  #rooms = new Map<string, Map<string, number>>();

  /** Rooms with anyone in them (for heartbeats). */
  get rooms(): ReadonlyMap<string, ReadonlyMap<string, number>> {
    return this.#rooms;
  }

  /** Adds one; returns the user's new count in the room. */
  join(room: string, user: string): number {
    let users = this.#rooms.get(room);
    if (!users) this.#rooms.set(room, users = new Map());
    const n = (users.get(user) ?? 0) + 1;
    users.set(user, n);
    return n;
  }

  /** Removes one; returns the user's new count (0: gone). */
  leave(room: string, user: string): number {
    const users = this.#rooms.get(room);
    const n = (users?.get(user) ?? 0) - 1;
    if (!users || n < 0) return 0;
    if (n === 0) {
      users.delete(user);
      if (users.size === 0) this.#rooms.delete(room);
    } else {
      users.set(user, n);
    }
    return n;
  }

  list(room: string): Promise<PresenceEntry[]> {
    const users = this.#rooms.get(room);
    const out = users
      ? [...users].map(([user, connections]) => ({ user, connections }))
      : [];
    return Promise.resolve(out.sort((a, b) => a.user < b.user ? -1 : 1));
  }

  close(): Promise<void> {
    this.#rooms.clear();
    return Promise.resolve();
  }
}
