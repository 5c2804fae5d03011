/**
 * The chat domain: rooms, message ids, history, subscriptions and their
 * counters.
 *
 * Transport-agnostic: `T` is whatever the transport hands to subscribers
 * (for gRPC, one encoded message shared by all of them), built by
 * `options.item()` from a stored body, its offset and the room's epoch.
 *
 * A publish is stored first (CommitQueue: one transaction per turn), then
 * delivered to the room's live members, then acknowledged. A subscriber that
 * asked for history, or resumes, catches up from the store page by page,
 * reading only as much as its queue can take (so replaying thousands of
 * messages to one subscriber holds up no one), and turns live at the moment
 * it has everything up to the room's last offset: no gap, no duplicate.
 */
import { nextDecimal } from "./decimal.ts";
import { setTimeout as delay } from "node:timers/promises";
import { CommitQueue, type Committed } from "./commit_queue.ts";
import { ChatError } from "./errors.ts";
import type {
  Appended,
  AppendEntry,
  AppendKey,
  HistoryStore,
  RoomPosition,
} from "./history_store.ts";
import { type Member, type Room, RoomRegistry } from "./room_registry.ts";
import { ChatStats } from "./stats.ts";
import { turnNow } from "./turn_clock.ts";
import {
  type Sink,
  type SlowConsumerPolicy,
  Subscriber,
  type SubscriberOptions,
} from "./subscriber.ts";

export interface HubOptions<T> {
  /** Items a paused subscriber may queue (the seed's channel size: 100). */
  queueCapacity: number;
  /** Bytes of items a paused subscriber may queue (0 or absent: no bound). */
  queueBytes?: number;
  /** An item's size, for `queueBytes`. */
  itemBytes?(item: T): number;
  policy: SlowConsumerPolicy;
  store: HistoryStore;
  /** What subscribers receive for a stored message. */
  item(body: Uint8Array, offset: number, epoch: string): T;
  /** Called with a bug in a publish callback (logged by the owner). */
  onInternal?: (err: unknown) => void;
}

/** What a subscriber asks to be replayed (all optional: live only). */
export interface Replay {
  /** The room's last N retained messages. */
  history?: number;
  /** With `epoch`: every retained message after this offset. */
  sinceOffset?: number;
  /** The epoch `sinceOffset` belongs to; another epoch replays nothing. */
  epoch?: string;
}

export interface SubscribeOptions<T> extends Replay {
  /** The first item, built from the room's position at subscription. */
  welcome(position: RoomPosition): T;
  /** Cut off by the "disconnect" policy; the caller ends its stream. */
  onOverflow(): void;
  /** The store failed while starting or replaying (UNAVAILABLE). */
  onError(err: ChatError): void;
}

export interface Subscription<T> {
  readonly subscriber: Subscriber<T>;
  /** Leaves the room. Idempotent; call it on every exit path. */
  leave(): void;
}

/** A member as the hub tracks it: one catch-up loop at a time. */
interface Tracked<T> extends Member<T> {
  catchingUp: boolean;
  /**
   * Rows its next catch-up read asks for (ChatHub.#catchUpLoop says how it
   * is sized). A member's, not its loop's: the loop ends at every push-back
   * and its sink's drain starts the next one.
   */
  replayPage: number;
  fail(err: unknown): void;
}

/**
 * One subscription: the room member, its subscriber's listener and the
 * handle the caller leaves with, in one object. Methods rather than a
 * closure each: an idle subscriber is held for as long as it stays, and
 * 100,000 of them should fit in a few hundred MB (docs/perf-log.md, "Idle
 * subscribers").
 */
class HubMember<T>
  implements Tracked<T>, Subscription<T>, SubscriberOptions<T> {
  readonly subscriber: Subscriber<T>;
  live = false;
  delivered = 0;
  epoch = "";
  catchingUp = false;
  replayPage = REPLAY_PAGE;
  /** Set by the hub right after joining. */
  room!: Room<T>;
  #ended = false;

  constructor(
    readonly hub: ChatHub<T>,
    readonly rooms: RoomRegistry<T>,
    readonly name: string,
    sink: Sink<T>,
    readonly options: SubscribeOptions<T>,
  ) {
    this.subscriber = new Subscriber<T>(sink, this);
  }

  // SubscriberOptions: read by the Subscriber.
  get capacity(): number {
    return this.hub.queueCapacity;
  }

  get policy(): SlowConsumerPolicy {
    return this.hub.policy;
  }

  get maxBytes(): number | undefined {
    return this.hub.queueBytes;
  }

  bytes(item: T): number {
    return this.hub.itemBytes(item);
  }

  onDrop(): void {
    this.hub.stats.dropped++;
  }

  fellBehind(): void {
    this.hub.stats.fellBehind++;
  }

  missed(count: number): void {
    // Under "disconnect" a catching-up member goes on in the new epoch, as
    // it did before members fell behind (only "drop" has them).
    if (this.hub.policy === "drop") this.subscriber.lost(count);
  }

  onOverflow(): void {
    this.hub.stats.slowDisconnects++;
    this.leave();
    // Deferred so that the stream is not ended inside a publish loop.
    queueMicrotask(() => this.options.onOverflow());
  }

  onIdle(): void {
    this.hub.idle(this);
  }

  /** The room's position is known: the welcome, then the replay. */
  start(position: RoomPosition): void {
    if (this.subscriber.closed) return;
    const room = this.room;
    if (!room.known) {
      room.epoch = position.epoch;
      room.last = position.offset;
      room.known = true;
    }
    this.subscriber.deliver(
      this.options.welcome({ epoch: room.epoch, offset: room.last }),
    );
    this.epoch = room.epoch;
    // What the welcome says it has, until the replay places it.
    this.delivered = room.last;
    this.hub.replay(this);
  }

  restart(): void {
    if (!this.subscriber.closed) this.hub.replay(this);
  }

  leave(): void {
    this.#ended = true;
    this.rooms.leave(this.name, this);
    this.hub.left(this.name);
  }

  fail(cause: unknown): void {
    if (this.#ended || this.subscriber.closed) return;
    this.leave();
    this.options.onError(
      ChatError.is(cause) ? cause : new ChatError(
        "unavailable",
        `history store unavailable: ${(cause as Error)?.message ?? cause}`,
        { cause },
      ),
    );
  }
}

/** Messages read from the store per page of a catch-up, at most. */
const REPLAY_PAGE = 256;
/** ... and at least, after a push-back (unless the queue is smaller). */
const REPLAY_PAGE_MIN = 16;

export class ChatHub<T> {
  readonly stats: ChatStats = new ChatStats();
  readonly store: HistoryStore;
  #rooms = new RoomRegistry<T>();
  #options: HubOptions<T>;
  #lastId: number;
  /** `#lastId` in decimal, counted as text (decimal.ts says why). */
  #lastIdText: string;
  /**
   * The next id past which the store's id block needs a look (its ask mark,
   * then its end); Infinity when the store has no id blocks.
   */
  #idMark: number;
  #commits: CommitQueue;
  /**
   * Members waiting for an epoch (#placeByStore): how many of its messages
   * the store held that they lack. Rare, so kept here, not in each member.
   */
  #waits = new WeakMap<HubMember<T>, number>();
  /**
   * With a shared store (`store.follow`): the rooms this process follows,
   * by name: the position following began at, and how to stop.
   */
  #following = new Map<
    string,
    { position: Promise<RoomPosition>; stop?: () => void }
  >();

  constructor(options: HubOptions<T>) {
    this.#options = options;
    this.store = options.store;
    this.#lastId = options.store.lastMessageId;
    this.#lastIdText = String(this.#lastId);
    this.#idMark = options.store.idBlocks?.askAfter ?? Infinity;
    const max = options.queueBytes;
    this.queueBytes = max === undefined || max === 0 || !options.itemBytes
      ? undefined
      : max;
    this.#commits = new CommitQueue(
      options.store,
      () => this.#lastId,
      (entries, appended) => this.#deliver(entries, appended),
      (err) => options.onInternal?.(err),
    );
  }

  get subscriberCount(): number {
    return this.#rooms.subscriberCount;
  }

  /** Items a paused subscriber may queue. */
  get queueCapacity(): number {
    return this.#options.queueCapacity;
  }

  /** Bytes a paused subscriber may queue; undefined: no bound. */
  readonly queueBytes: number | undefined;

  itemBytes(item: T): number {
    return this.#options.itemBytes?.(item) ?? 0;
  }

  get policy(): SlowConsumerPolicy {
    return this.#options.policy;
  }

  get roomCount(): number {
    return this.#rooms.roomCount;
  }

  /** Publishes waiting for their commit. */
  get pendingCommits(): number {
    return this.#commits.pending;
  }

  /** Messages waiting in subscriber queues (read at metrics scrapes). */
  queueDepth(): { total: number; max: number } {
    return this.#rooms.queueDepth();
  }

  countIn(room: string): number {
    return this.#rooms.countIn(room);
  }

  /** The seed's ids: `msg_1`, `msg_2`, ... unique across restarts of a durable store. */
  nextMessageId(): string {
    if (this.#lastId >= this.#idMark) this.#idBlockMark();
    this.#lastId++;
    this.#lastIdText = nextDecimal(this.#lastIdText);
    return "msg_" + this.#lastIdText;
  }

  /**
   * Past the id block's ask mark: asks for the next block. At its end: the
   * next block, or UNAVAILABLE while it is still on its way.
   */
  #idBlockMark(): void {
    const blocks = this.store.idBlocks!;
    if (this.#lastId < blocks.end) {
      blocks.ask();
      this.#idMark = blocks.end;
      return;
    }
    const from = blocks.next();
    if (from === undefined) {
      throw new ChatError(
        "unavailable",
        "no message ids left: the next block has not come from the broker yet",
      );
    }
    this.#lastId = from;
    this.#lastIdText = String(from);
    this.#idMark = blocks.askAfter;
  }

  /**
   * Stores a message, then delivers it to the room, then calls `done` with
   * its offset and epoch (or an UNAVAILABLE ChatError: nothing stored,
   * nothing delivered).
   */
  publish(
    room: string,
    body: Uint8Array,
    done?: Committed,
    key?: AppendKey,
  ): void {
    this.#commits.add({ room, body, timeMs: turnNow(), key }, done);
  }

  #deliver(entries: AppendEntry[], appended: Appended[]): void {
    const stats = this.stats;
    const item = this.#options.item;
    if (this.store.follow) {
      // A shared store delivers every process's messages, ours included;
      // a repeat it left out was not published.
      for (let i = 0; i < appended.length; i++) {
        if (appended[i].repeatOf === undefined) stats.messagesPublished++;
      }
      return;
    }
    for (let i = 0; i < entries.length; i++) {
      const { room, body } = entries[i];
      const { offset, epoch, repeatOf } = appended[i];
      if (repeatOf !== undefined) continue; // not stored: nothing to deliver
      stats.messagesPublished++;
      stats.deliveries += this.#rooms.publish(room, offset, epoch, item, body);
    }
  }

  /**
   * Joins a room: the welcome first, then the replay asked for, then live
   * messages, all through the subscriber's bounded queue.
   */
  subscribe(
    name: string,
    sink: Sink<T>,
    options: SubscribeOptions<T>,
  ): Subscription<T> {
    const member = new HubMember(this, this.#rooms, name, sink, options);
    member.room = this.#rooms.join(name, member);
    const room = member.room;
    if (room.known) member.start({ epoch: room.epoch, offset: room.last });
    else {
      this.#position(name).then(
        (position) => member.start(position),
        (err) => member.fail(err),
      );
    }
    return member;
  }

  /**
   * A member left. If it was the room's last: stop following it (a shared
   * store), or let the store forget it if nothing was ever said in it.
   */
  left(name: string): void {
    if (this.#rooms.get(name) !== undefined) return;
    if (this.store.follow) this.#unfollow(name);
    else this.store.release?.(name);
  }

  /** Starts a member's replay from `after`, or turns it live. */
  replay(member: HubMember<T>): void {
    const room = member.room;
    const asked = member.options;
    // With a shared store, this core's feed may lag behind what the client
    // saw on another core: an offset past the room's last here, or an
    // epoch this core has not reached yet. Only the store can tell such a
    // client from a wrong one.
    if (
      this.store.follow !== undefined && asked.epoch !== undefined &&
      asked.epoch !== "" &&
      (asked.epoch !== room.epoch || (asked.sinceOffset ?? 0) > room.last)
    ) {
      const seen = room.epoch;
      // Not caught up meanwhile: a drained welcome would start from 0.
      member.catchingUp = true;
      this.store.position(room.name).then((position) => {
        member.catchingUp = false;
        if (member.subscriber.closed) return;
        // The room moved to another epoch meanwhile: decide again.
        if (room.epoch !== seen) return this.replay(member);
        this.#placeByStore(member, position);
      }, (err) => {
        member.catchingUp = false;
        member.fail(err);
      });
      return;
    }
    member.delivered = replayFrom(room, asked);
    this.#liveOrCatchUp(member);
  }

  /**
   * A resume that this core's view of the room could not place, placed by
   * the store's own position (see `replay`).
   */
  #placeByStore(member: HubMember<T>, position: RoomPosition): void {
    const room = member.room;
    const asked = member.options;
    const waited = this.#waits.get(member);
    this.#waits.delete(member);
    if (position.epoch !== asked.epoch) {
      // It waited for an epoch that ended before this process's feed got
      // there: what the store held of it then never reaches the client.
      if (waited !== undefined && waited > 0) {
        member.subscriber.lost(waited);
        if (member.subscriber.closed) return;
      }
      // An epoch the store no longer has: from the welcome on, as
      // replayFrom (what the feed brought meanwhile is read back, and
      // reported lost if the store has left this epoch too); if the client
      // is in this process's epoch, after what it has of it.
      if (asked.epoch === member.epoch) {
        member.delivered = Math.max(member.delivered, asked.sinceOffset ?? 0);
      }
      this.#liveOrCatchUp(member, false);
      return;
    }
    member.epoch = position.epoch;
    member.delivered = Math.min(asked.sinceOffset ?? 0, position.offset);
    // The client is in an epoch this core's feed has not reached: it waits
    // (not live) until RoomRegistry.publish moves the room to that epoch,
    // keeps what it has and turns it live.
    if (member.epoch !== room.epoch) {
      this.#waits.set(member, position.offset - member.delivered);
      return;
    }
    this.#liveOrCatchUp(member);
  }

  /** `first`: a gap before the first message read is history not kept. */
  #liveOrCatchUp(member: HubMember<T>, first = true): void {
    const room = member.room;
    if (member.delivered >= room.last) member.live = true;
    else this.#catchUp(room, member, first);
  }

  /** A member's sink drained: go on with its catch-up, if any. */
  idle(member: HubMember<T>): void {
    // A member waiting for an epoch (#placeByStore) has nothing to read yet.
    if (
      !member.live && member.epoch !== "" && member.epoch === member.room.epoch
    ) {
      this.#catchUp(member.room, member);
    }
  }

  /** The room's position; with a shared store, from following it. */
  #position(name: string): Promise<RoomPosition> {
    const store = this.store;
    if (!store.follow) return store.position(name);
    const known = this.#following.get(name);
    if (known) return known.position;
    const item = this.#options.item;
    const entry: { position: Promise<RoomPosition>; stop?: () => void } = {
      position: store.follow(name, (epoch, offset, body) => {
        this.stats.deliveries += this.#rooms.publish(
          name,
          offset,
          epoch,
          item,
          body,
        );
      }).then((follow) => {
        entry.stop = follow.stop;
        // Everyone left while following began.
        if (this.#following.get(name) !== entry) follow.stop();
        return { epoch: follow.epoch, offset: follow.offset };
      }, (err) => {
        if (this.#following.get(name) === entry) this.#following.delete(name);
        throw err;
      }),
    };
    this.#following.set(name, entry);
    return entry.position;
  }

  /** The room has no subscribers here any more: stop following it. */
  #unfollow(name: string): void {
    const entry = this.#following.get(name);
    if (!entry) return;
    this.#following.delete(name);
    entry.stop?.();
  }

  /**
   * Reads the member's missing messages from the store while its queue has
   * room; turns it live once it has the room's last offset. Resumed by the
   * subscriber's `onIdle` when it had to stop for a full sink.
   */
  #catchUp(room: Room<T>, member: Tracked<T>, first = false): void {
    if (member.catchingUp) return; // the running loop sees the change
    member.catchingUp = true;
    this.#catchUpLoop(room, member, first).catch((err) => member.fail(err));
  }

  async #catchUpLoop(
    room: Room<T>,
    member: Tracked<T>,
    first: boolean,
  ): Promise<void> {
    // Cleared as the loop ends, not a turn later: a sink that drains at
    // once (its onIdle, in the same turn) must find no loop running, or
    // its catch-up would never go on.
    try {
      const subscriber = member.subscriber;
      const cap = Math.min(REPLAY_PAGE, this.#options.queueCapacity);
      // Rows past the sink's push-back are dropped, not kept (bodies may be
      // megabytes each), and read again after its drain: so each read asks
      // for about what the sink took since its last drain. A whole page
      // for a sink not seen pushing back yet; after a push-back, twice
      // what it took (at least REPLAY_PAGE_MIN), so that a sink whose
      // window varies up to twofold still needs one read per drain while
      // at most half of each read is thrown away; double again after a
      // page taken whole.
      let page = Math.min(member.replayPage, cap);
      // Rows delivered since this loop began: since the sink drained.
      let taken = 0;
      while (!subscriber.closed && !member.live) {
        if (member.delivered >= room.last) {
          member.live = true;
          return;
        }
        if (subscriber.paused) return; // onIdle comes back here
        const epoch = member.epoch;
        const after = member.delivered;
        const rows = await this.store.read(room.name, after, page, epoch);
        if (subscriber.closed || member.live) return;
        // The epoch changed meanwhile: start over from its beginning.
        if (member.epoch !== epoch) continue;
        const next = rows.length > 0 ? rows[0].offset : room.last + 1;
        // A gap at the start is history the client asked for but that is no
        // longer kept (it sees so from the offsets); a gap later means the
        // subscriber was too slow for the history to wait for it.
        if (!first && next > after + 1) {
          subscriber.lost(Math.min(next, room.last + 1) - after - 1);
          if (subscriber.closed) return;
        }
        first = false;
        // Nothing more, or (a shared store) the store trimmed offsets that
        // this process's feed has not brought yet: go live, the feed brings
        // them, reading the later rows now would skip them.
        if (rows.length === 0 || next > room.last + 1) {
          member.delivered = room.last;
          continue;
        }
        // Up to the sink's first push-back: the rest of the page is read
        // again once it drains (onIdle), rather than filling the queue,
        // which holds what comes live meanwhile.
        for (const row of rows) {
          subscriber.deliver(this.#options.item(row.body, row.offset, epoch));
          member.delivered = row.offset;
          taken++;
          if (subscriber.paused) break;
        }
        if (subscriber.paused) {
          page = Math.min(Math.max(2 * taken, REPLAY_PAGE_MIN), cap);
        } else if (rows.length >= page) page = Math.min(2 * page, cap);
        member.replayPage = page;
        // Let other work (publishes, other subscribers) run between pages.
        if (!subscriber.paused && member.delivered < room.last) await delay(0);
      }
    } finally {
      member.catchingUp = false;
    }
  }
}

/** The offset after which a new subscriber's replay starts. */
function replayFrom<T>(room: Room<T>, replay: Replay): number {
  if (replay.epoch !== undefined && replay.epoch !== "") {
    if (replay.epoch !== room.epoch) return room.last;
    // Clamped: an offset past the room's last (a store that lost its last
    // commits and hands their offsets out again, a wrong client) must not
    // keep the next messages from this subscriber.
    return Math.min(replay.sinceOffset ?? 0, room.last);
  }
  if (replay.history !== undefined && replay.history > 0) {
    return Math.max(0, room.last - replay.history);
  }
  return room.last;
}
