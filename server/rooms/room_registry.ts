/**
 * Rooms by name, each with its members and its history position; a
 * committed message fans out to the members that are live.
 *
 * The payload type is opaque here: the transport publishes bytes it encoded
 * once, and every subscriber receives that same object. Empty rooms are
 * removed so that the map does not grow with every room name ever used.
 */
import type { Subscriber } from "./subscriber.ts";

/** A subscriber in a room, with where it stands in the room's history. */
export interface Member<T> {
  readonly subscriber: Subscriber<T>;
  /**
   * Live members get each committed message as it is published; the
   * others are catching up from the store (or not started yet).
   */
  live: boolean;
  /** The last offset this member was handed, in `epoch`. */
  delivered: number;
  /**
   * The room's epoch, but for a member waiting (not live) for an epoch
   * this process has not seen yet (ChatHub.replay); "" before it starts.
   */
  epoch: string;
  /**
   * The room moved to an epoch other than the one this member waited for
   * (it is now at offset 0 of the room's epoch, not live): place it again.
   */
  restart?(): void;
  /** It was too slow for a message and stopped being live (see publish). */
  fellBehind?(): void;
  /**
   * The room's epoch ended while this member, not live, still lacked
   * `count` of its messages (it fell behind, or was catching up): they are
   * gone with that epoch.
   */
  missed?(count: number): void;
}

/** A room with members: its epoch and last offset, as far as known here. */
export class Room<T> {
  readonly members: Set<Member<T>> = new Set();
  epoch = "";
  last = 0;
  /** Set once the store's position (or a committed message) was seen. */
  known = false;

  constructor(readonly name: string) {}
}

export class RoomRegistry<T> {
  #rooms = new Map<string, Room<T>>();
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
    return this.#rooms.get(room)?.members.size ?? 0;
  }

  get(room: string): Room<T> | undefined {
    return this.#rooms.get(room);
  }

  /** Items waiting in subscriber queues: all together, and the fullest one. */
  queueDepth(): { total: number; max: number } {
    let total = 0;
    let max = 0;
    for (const room of this.#rooms.values()) {
      for (const { subscriber } of room.members) {
        const queued = subscriber.queued;
        total += queued;
        if (queued > max) max = queued;
      }
    }
    return { total, max };
  }

  /** Adds a member to a room; returns the room. */
  join(name: string, member: Member<T>): Room<T> {
    let room = this.#rooms.get(name);
    if (!room) {
      room = new Room(name);
      this.#rooms.set(name, room);
    }
    room.members.add(member);
    this.#subscribers++;
    return room;
  }

  /**
   * Removes a member from its room and closes its subscriber. Idempotent,
   * so every exit path may call it. A method rather than a closure per
   * member: idle subscribers are many (docs/perf-log.md, "Idle
   * subscribers").
   */
  leave(name: string, member: Member<T>): void {
    member.subscriber.close();
    const current = this.#rooms.get(name);
    if (current?.members.delete(member)) {
      this.#subscribers--;
      if (current.members.size === 0) this.#rooms.delete(name);
    }
  }

  /**
   * Delivers a committed message to every live member of its room; returns
   * how many. The item is built (once) only when a live member is there. Never waits: slow subscribers queue or apply their policy.
   * Members catching up read it from the store instead.
   */
  publish(
    name: string,
    offset: number,
    epoch: string,
    build: (body: Uint8Array, offset: number, epoch: string) => T,
    body: Uint8Array,
  ): number {
    const room = this.#rooms.get(name);
    if (!room) return 0;
    if (room.epoch !== epoch) {
      // The room's history was lost (expired); everyone starts over in
      // the new epoch, but for members that resumed in it already (a
      // client ahead of this process's feed, see ChatHub.replay): they
      // keep what they have and turn live.
      let restarted: Member<T>[] | undefined;
      for (const m of room.members) {
        if (m.epoch === epoch) m.live = true; // waited for this one
        else {
          // Waiting for another epoch: older or newer than this one, only
          // the store can tell (`restart`).
          if (m.epoch !== room.epoch) (restarted ??= []).push(m);
          else if (!m.live && m.delivered < room.last) {
            m.missed?.(room.last - m.delivered);
          }
          m.epoch = epoch;
          m.delivered = 0;
        }
      }
      room.epoch = epoch;
      if (restarted) { for (const m of restarted) m.restart?.(); }
    }
    room.last = offset;
    room.known = true;
    let reached = 0;
    let built: T | undefined;
    // A disconnect-policy overflow may remove a member during this loop;
    // Set iteration tolerates deletion of entries not yet visited.
    for (const m of room.members) {
      // Each offset once: with a shared store, a member's catch-up may have
      // read past what this process's feed had delivered, then gone live.
      if (!m.live || offset <= m.delivered) continue;
      // A gap: a shared store's feed could not fill it (trimmed history).
      if (offset > m.delivered + 1) {
        m.subscriber.lost(offset - m.delivered - 1);
        if (m.subscriber.closed) continue;
        // Told: a catch-up (falling behind, below) must not count it again.
        m.delivered = offset - 1;
      }
      built ??= build(body, offset, epoch);
      // Too slow to take it now (queue full, "drop" policy): rather than
      // lose it, the member stops being live and reads it and what follows
      // from the store once it drains (ChatHub.idle); only what history no
      // longer holds then counts as dropped. Otherwise a message dropped at
      // the end of a burst left a gap the client could not see until the
      // room's next message.
      if (!m.subscriber.offer(built)) {
        m.live = false;
        m.fellBehind?.();
        continue;
      }
      m.delivered = offset;
      reached++;
    }
    return reached;
  }
}
