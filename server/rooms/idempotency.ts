/**
 * Idempotent posts: a SendMessage sent again with the same idempotency key
 * (by the same user, to the same room) within a window gets the first one's
 * answer, and nothing more is stored or delivered. UploadMessages and Chat
 * messages with a key go through the same index (grpc/streamed_posts.ts). A client that lost an
 * answer (its connection cut, the core killed after the commit) may then
 * send again without posting twice, as Centrifugo's publish
 * `idempotency_key`, NATS JetStream's `Nats-Msg-Id` and Discord's `nonce`
 * allow.
 *
 * Keys must outlive a restart: a post acknowledged by a core killed before
 * its answer left is sent again to the next one. So the key travels inside
 * the stored message (`Message.idempotency_key`, which also lets its sender
 * tell its own message), and a room's keys are read back from its retained
 * history (`read`) the first time a keyed post comes for it; meanwhile keyed
 * posts to that room wait, in order. A store that checks keys itself in its
 * append (`HistoryStore.checksKeys`: Redis, atomically across cores, the
 * only store several cores share) is given no `read`: a key this index does
 * not know is published, and the store answers a repeat with the first's
 * message (`PublishDone`'s `repeated`).
 *
 * Memory is bounded: keys are kept `windowMs` after their message, and at
 * most `maxKeys` in all (the oldest go first, so past the bound a send
 * retried late can post twice).
 *
 * @module
 */

/** What the first post of a key was answered with. */
export interface PostResult {
  readonly id: string;
  readonly timeMs: number;
  readonly offset: number;
}

/** A keyed message found in a room's stored history. */
export interface StoredKey extends PostResult {
  readonly user: string;
  readonly key: string;
  /**
   * When the store took the message, if it says; else its `timeMs`. A
   * streamed message's timestamp is its client's (telemetry may carry a
   * sample's time from long ago, or none), so the store's is the better
   * date for the window.
   */
  readonly storedMs?: number;
}

/** Where a post's outcome goes (the first's, or the one it repeats). */
export type PostAnswer = (err: unknown, result?: PostResult) => void;

/**
 * Posts a message for real; `done` once it is stored (or failed), with
 * `repeated` when the store found the key's `scope` itself (a store that
 * checks keys: another core stored it first).
 */
export type Publish = (done: PublishDone, scope: string) => void;

/** See {@linkcode Publish}. */
export type PublishDone = (
  err: unknown,
  result?: PostResult,
  repeated?: boolean,
) => void;

/**
 * Reads a room's keyed messages with offset > `after` (all of them), and
 * the last offset read.
 */
export type ReadKeys = (
  room: string,
  after: number,
) => Promise<{ keys: StoredKey[]; last: number }>;

export interface IdempotencyOptions {
  /** How long a key is remembered after its message, in ms. */
  windowMs: number;
  /** Keys remembered at most, over all rooms. */
  maxKeys: number;
  /**
   * The room's stored keys, read back the first time a keyed post comes
   * for it; undefined for a store that checks keys itself (nothing to read).
   */
  read?: ReadKeys;
  /**
   * The store answers repeats itself, in the room's current epoch (Redis):
   * the index holds a key only while its post is pending (so that repeats
   * sent meanwhile wait for it) and asks the store for every later one. An
   * answer kept here would outlive the room's history: after Redis lost the
   * room (a restart without persistence, the room's TTL) it would answer a
   * retry with an offset of the lost epoch, which a message of the new one
   * now holds, and store nothing.
   */
  storeAnswers?: boolean;
  now?: () => number;
}

/**
 * A room's map key for `key` sent by `user`. The user's length comes first:
 * a user name may hold any character, so with a separator alone ("ann" and
 * "x\ny", "ann\nx" and "y") two users' keys could meet.
 */
function scopeOf(user: string, key: string): string {
  return user.length + ":" + user + key;
}

/** One key: its post's result, or the answers waiting for it. */
interface Entry {
  readonly room: RoomKeys;
  readonly scope: string;
  result: PostResult | undefined;
  waiters: PostAnswer[] | undefined;
  /** When the message was stored (or the post began, while pending). */
  atMs: number;
  /** Still in its room's map (not evicted or failed). */
  live: boolean;
}

interface Job {
  readonly scope: string;
  readonly publish: Publish;
  readonly answer: PostAnswer;
}

/** A room's keys, and the posts waiting while they are read. */
interface RoomKeys {
  readonly name: string;
  readonly keys: Map<string, Entry>;
  /** Posts waiting for the read of the room's stored keys. */
  queue: Job[] | undefined;
  /** The last offset of the room read for keys. */
  read: number;
  loaded: boolean;
}

/** Keyed posts and what they were answered; see the module doc. */
export class IdempotencyIndex {
  readonly #opts: IdempotencyOptions;
  readonly #now: () => number;
  readonly #rooms = new Map<string, RoomKeys>();
  /**
   * Rooms whose keys were read, and up to which offset, kept after their
   * keys are gone (a quiet room is not read again at each post), least
   * recently read first, at most `maxKeys`.
   */
  readonly #readUpTo = new Map<string, number>();
  /** Every live entry, oldest first (expiry and the bound). */
  #order: Entry[] = [];
  #head = 0;
  #size = 0;
  /**
   * The newest message time among keys dropped for the bound: a room read
   * again (its keys all dropped) does not take them back.
   */
  #forgottenBefore = -Infinity;
  /** Repeats answered with an earlier post's result (a counter). */
  repeats = 0;

  constructor(options: IdempotencyOptions) {
    this.#opts = options;
    this.#now = options.now ?? Date.now;
  }

  /** Keys remembered now (pending or answered). */
  get size(): number {
    return this.#size;
  }

  /** Entries in the expiry order, gone ones included (its memory). */
  get listed(): number {
    return this.#order.length - this.#head;
  }

  /**
   * Posts once per (room, user, key) in the window: `publish` runs for the
   * first; every post of the key gets the first's outcome in `answer`.
   * Returns false when the post waits for the room's stored keys to be
   * read (`publish` or `answer` runs later), true when it ran now (its
   * `publish` ran, or it is answered or waits for the first of its key).
   */
  post(
    room: string,
    user: string,
    key: string,
    publish: Publish,
    answer: PostAnswer,
  ): boolean {
    // Keys past the window go before the room is looked up: a room they
    // leave empty is dropped now, not under the post about to use it.
    this.#expire(this.#now());
    const r = this.#room(room);
    const job = { scope: scopeOf(user, key), publish, answer };
    if (r.queue !== undefined) {
      r.queue.push(job);
      return false;
    }
    if (!r.loaded) {
      this.#read(r, job);
      return false;
    }
    this.#run(r, job);
    return true;
  }

  #room(name: string): RoomKeys {
    let r = this.#rooms.get(name);
    if (r === undefined) {
      const read = this.#readUpTo.get(name);
      r = {
        name,
        keys: new Map(),
        queue: undefined,
        read: read ?? 0,
        // Nothing to read back from a store that checks keys itself.
        loaded: read !== undefined || this.#opts.read === undefined,
      };
      this.#rooms.set(name, r);
    }
    return r;
  }

  /** Reads the room's keys after `r.read`, then runs the waiting posts. */
  #read(r: RoomKeys, first: Job): void {
    r.queue = [first];
    this.#opts.read!(r.name, r.read).then(
      ({ keys, last }) => {
        const now = this.#now();
        const oldest = Math.max(
          now - this.#opts.windowMs,
          this.#forgottenBefore + 1,
        );
        for (const k of keys) {
          const atMs = k.storedMs ?? k.timeMs;
          if (atMs < oldest) continue;
          const scope = scopeOf(k.user, k.key);
          const known = r.keys.get(scope);
          if (known !== undefined && known.result !== undefined) continue;
          // A pending post of ours with the same key cannot be in the
          // store yet: posts of a room wait while it is read.
          const result = { id: k.id, timeMs: k.timeMs, offset: k.offset };
          // A time ahead of ours (another core's clock; a client's own
          // timestamp, which UploadMessages stores as sent) is taken as
          // now: a key dated years ahead at the head of #order would stop
          // every key after it from expiring, and once dropped for the
          // bound would set #forgottenBefore years ahead.
          this.#add(r, scope, result, Math.min(atMs, now));
        }
        r.read = last;
        r.loaded = true;
        this.#readUpTo.delete(r.name);
        this.#readUpTo.set(r.name, r.read);
        if (this.#readUpTo.size > this.#opts.maxKeys) {
          this.#readUpTo.delete(this.#readUpTo.keys().next().value!);
        }
        this.#drain(r, undefined);
      },
      (err) => this.#drain(r, err),
    );
  }

  /** Runs the posts that waited for a read (or fails them with its error). */
  #drain(r: RoomKeys, err: unknown): void {
    // `r.queue` stays set while the queue runs, so that a post refused at
    // once (its key removed, the room left empty) does not drop the room
    // under the posts after it.
    const queue = r.queue!;
    for (let i = 0; i < queue.length; i++) {
      const job = queue[i];
      if (err !== undefined) job.answer(err);
      else this.#run(r, job);
    }
    r.queue = undefined;
    if (r.keys.size === 0) this.#drop(r);
  }

  #run(r: RoomKeys, job: Job): void {
    const now = this.#now();
    const known = r.keys.get(job.scope);
    if (known !== undefined) {
      if (known.result !== undefined) {
        this.repeats++;
        job.answer(undefined, known.result);
      } else (known.waiters ??= []).push(job.answer);
      return;
    }
    const entry = this.#add(r, job.scope, undefined, now);
    let finished = false;
    const finish: PublishDone = (err, result, repeated) => {
      if (finished) return;
      finished = true;
      const waiters = entry.waiters;
      entry.waiters = undefined;
      if (err !== undefined || result === undefined) {
        // Nothing stored: the key is free for the next try.
        this.#remove(entry);
        job.answer(err);
        if (waiters) { for (const w of waiters) w(err); }
        return;
      }
      if (this.#opts.storeAnswers) this.#remove(entry);
      entry.result = result;
      entry.atMs = result.timeMs;
      if (repeated) this.repeats++;
      job.answer(undefined, result);
      if (waiters) {
        this.repeats += waiters.length;
        for (const w of waiters) w(undefined, result);
      }
    };
    try {
      job.publish(finish, job.scope);
    } catch (err) {
      // Refused before anything was stored (too large, no ids left).
      finish(err);
    }
  }

  #add(
    r: RoomKeys,
    scope: string,
    result: PostResult | undefined,
    atMs: number,
  ): Entry {
    const entry: Entry = {
      room: r,
      scope,
      result,
      waiters: undefined,
      atMs,
      live: true,
    };
    const old = r.keys.get(scope);
    r.keys.set(scope, entry);
    // After the new entry is in: the old one's going leaves the room in use.
    if (old !== undefined) this.#remove(old);
    this.#order.push(entry);
    this.#size++;
    while (this.#size > this.#opts.maxKeys) {
      const e = this.#shift()!;
      this.#forgottenBefore = Math.max(this.#forgottenBefore, e.atMs);
      this.#remove(e);
    }
    this.#compact();
    return entry;
  }

  /** Drops keys whose message is older than the window, from the oldest. */
  #expire(now: number): void {
    const oldest = now - this.#opts.windowMs;
    const order = this.#order;
    while (this.#head < order.length) {
      const e = order[this.#head];
      if (e.live && (e.result === undefined || e.atMs >= oldest)) break;
      this.#head++;
      this.#remove(e);
    }
    this.#compact();
  }

  /** The oldest live entry, taken off the list. */
  #shift(): Entry | undefined {
    const order = this.#order;
    let e: Entry | undefined;
    while (this.#head < order.length && e === undefined) {
      const next = order[this.#head++];
      if (next.live) e = next;
    }
    this.#compact();
    return e;
  }

  /** Drops the list's taken head once it is most of the list. */
  #compact(): void {
    const listed = this.#order.length - this.#head;
    if (listed > 1024 && listed > 2 * this.#size) {
      // Mostly gone entries (failed posts, replaced keys) behind a live
      // head: they would stay until it expires.
      this.#order = this.#order.slice(this.#head).filter((e) => e.live);
      this.#head = 0;
    } else if (this.#head > 1024 && this.#head * 2 > this.#order.length) {
      this.#order = this.#order.slice(this.#head);
      this.#head = 0;
    }
  }

  #remove(e: Entry): void {
    if (!e.live) return;
    e.live = false;
    this.#size--;
    const r = e.room;
    if (r.keys.get(e.scope) === e) r.keys.delete(e.scope);
    // An empty room goes (#readUpTo says it was read).
    if (r.keys.size === 0 && r.queue === undefined) this.#drop(r);
  }

  /** Forgets an empty room (unless another took its name meanwhile). */
  #drop(r: RoomKeys): void {
    if (this.#rooms.get(r.name) === r) this.#rooms.delete(r.name);
  }
}
