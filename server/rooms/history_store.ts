/**
 * Where room history lives: the contract between the chat domain and a
 * store (server/store/: log, SQLite, memory; the Redis broker).
 *
 * Async throughout so that a networked store fits behind it; the embedded
 * ones answer at once. The domain calls `append()` once per event-loop turn
 * with every publish of that turn (one transaction) and never has two
 * appends in flight, so a store may assign offsets from its own counters.
 */

/** A message to store: its room, its encoded body, the server's time. */
export interface AppendEntry {
  readonly room: string;
  /** The encoded message without offset and epoch (they are appended on delivery). */
  readonly body: Uint8Array;
  readonly timeMs: number;
  /**
   * A keyed post's idempotency scope (rooms/idempotency.ts), for a
   * store that checks keys itself (`checksKeys`); undefined otherwise.
   */
  readonly key?: AppendKey;
}

/** See {@linkcode AppendEntry.key}. */
export interface AppendKey {
  /** The user and key, as the idempotency index writes them. */
  readonly scope: string;
  /**
   * The message's id (`msg_N`; "" for a streamed message), given back to a
   * repeat.
   */
  readonly id: string;
  /**
   * The message's time, as its sender is answered (its timestamp), given
   * back to a repeat; the entry's `timeMs` is the time of its publish.
   */
  readonly timeMs: number;
  /** How long the scope is kept after its message, in ms. */
  readonly windowMs: number;
}

/** Where a stored message landed. */
export interface Appended {
  readonly offset: number;
  readonly epoch: string;
  /**
   * The entry was not stored: its key's scope was, within the window, by
   * the message with this id and time, at `offset` (a store that checks
   * keys itself, `checksKeys`).
   */
  readonly repeatOf?: { readonly id: string; readonly timeMs: number };
}

/** A room's history position: its epoch and its last offset (0: empty). */
export interface RoomPosition {
  readonly epoch: string;
  readonly offset: number;
}

/** A message read back from history. */
export interface StoredMessage {
  readonly offset: number;
  readonly body: Uint8Array;
  /**
   * When it was stored (its publish's time, ms), from a store that keeps
   * it (memory, log, sqlite); the idempotency index dates the keys it reads
   * back by it.
   */
  readonly timeMs?: number;
}

/** A store's health, for health checks and metrics. */
export interface StoreStatus {
  /** "down" after a failed commit, until one succeeds. */
  readonly state: "ok" | "down";
  /** The last failure's message, while down. */
  readonly error?: string;
  readonly commits: number;
  readonly failedCommits: number;
  /** Duration of the last commit, in ms. */
  readonly lastCommitMs: number;
  /** Sum of all commit durations, in ms (with `commits`, a mean). */
  readonly totalCommitMs: number;
}

/**
 * Message ids handed out in blocks by a store that several cores share: a
 * core numbers its messages up to its block's `end`, asking for the next
 * block on the way (`askAfter`), then moves on with `next()`.
 */
export interface IdBlocks {
  /** The last id of the block in use. */
  readonly end: number;
  /**
   * Past this id of the block in use, the next block is asked for
   * (`ask()`), so that it is there before `end`.
   */
  readonly askAfter: number;
  /** Asks for the next block (once; later calls wait for the same). */
  ask(): void;
  /**
   * Moves to the next block and returns the id to count on from (its first
   * id minus one), or undefined while that block is not there yet (it is
   * asked for then, if it was not already).
   */
  next(): number | undefined;
}

export interface HistoryStore {
  /** "log", "sqlite", "memory" or "redis" (logs, status). */
  readonly kind: string;
  /**
   * Appends a keyed entry (`AppendEntry.key`) only if no entry of its room
   * had the same scope within its window, atomically with every process
   * sharing the store; a repeat comes back with `Appended.repeatOf`. A
   * store several cores share must: the idempotency index of one core
   * (rooms/idempotency.ts) knows only that core's posts and what it read
   * back at a room's first keyed post. A store that checks keys is not read
   * back for them.
   */
  readonly checksKeys?: boolean;
  /** The highest message id number stored, so `msg_N` goes on after a restart. */
  readonly lastMessageId: number;
  /**
   * For a store several cores share (the Redis broker): the ids this core
   * may hand out come in blocks, starting from `lastMessageId`.
   */
  readonly idBlocks?: IdBlocks;
  /**
   * Stores a batch in one transaction and returns each entry's offset and
   * epoch, in order. Rejects when nothing of it was stored; offsets of a
   * failed batch are handed out again.
   */
  append(
    entries: readonly AppendEntry[],
    lastMessageId: number,
  ): Promise<Appended[]>;
  /**
   * `append()` for a store whose commit is synchronous (log, memory): the
   * offsets when it returns, a throw when nothing was stored. CommitQueue
   * uses it when present, so a turn's answers leave in the same turn.
   */
  appendSync?(
    entries: readonly AppendEntry[],
    lastMessageId: number,
  ): Appended[];
  /** A room's epoch and last offset (a new epoch for a room never seen). */
  position(room: string): Promise<RoomPosition>;
  /**
   * The last subscriber of `room` left. A room that never had a message
   * (made by `position()` for a subscriber) is forgotten then: its epoch
   * vouches for nothing, and keeping every name a client subscribed to
   * would let one client fill memory and disk with empty rooms. A room
   * with messages is kept (its epoch names its offsets). Not for a shared
   * store, whose rooms other processes may hold.
   */
  release?(room: string): void;
  /**
   * Up to `limit` retained messages with offset > `after`, oldest first.
   * With `epoch`: none when the room is in another epoch now (its history
   * restarted, so offsets after `after` are not the ones asked for).
   */
  read(
    room: string,
    after: number,
    limit: number,
    epoch?: string,
  ): Promise<StoredMessage[]>;
  /** Health and commit latency. */
  status(): StoreStatus;
  /**
   * Called after every commit with its duration in ms (for a histogram).
   * One listener; set by the owner.
   */
  onCommit?: (ms: number, ok: boolean) => void;
  /**
   * Called when `status().state` changes without a commit (a broker that
   * lost or regained its connection). One listener; set by the owner.
   */
  onStateChange?: () => void;
  /** Releases the store (stops its timers, closes its files). */
  close(): void | Promise<void>;
  /**
   * Only for a store shared by several processes (the Redis broker,
   * server/broker/): delivers every message of `room` stored from now on,
   * by any process, once and in offset order, and resolves with the room's
   * position when that started. The hub then delivers through this alone,
   * never straight after its own commits, so that every process shows one
   * order. `stop()` when the room has no subscribers here any more.
   */
  follow?(room: string, deliver: FollowDeliver): Promise<RoomFollow>;
}

/** Where a followed room's messages go. */
export type FollowDeliver = (
  epoch: string,
  offset: number,
  body: Uint8Array,
) => void;

/** A followed room: its position when following began, and how to stop. */
export interface RoomFollow extends RoomPosition {
  stop(): void;
}

/** Limits shared by every store. */
export interface HistoryLimits {
  /** Messages kept per room. */
  readonly size: number;
  /** How long a message is kept, in ms; 0 keeps it until `size` pushes it out. */
  readonly ttlMs: number;
  /**
   * Body bytes kept per room (the stores that hold bodies in memory: log,
   * memory); a single larger message is still kept as the room's last.
   * Unset: no byte bound.
   */
  readonly bytes?: number;
  /**
   * Rooms kept at most (the embedded stores); past it, the least recently
   * written are forgotten, as the TTL would. Unset: no bound.
   */
  readonly maxRooms?: number;
}

/** A fresh opaque epoch: random, 16 hex digits. */
export function newEpoch(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(8));
  let s = "";
  for (const b of bytes) s += b.toString(16).padStart(2, "0");
  return s;
}
