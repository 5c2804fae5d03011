/**
 * A room's retained history held in memory, shared by the memory store and
 * the log store (which keeps the same state, plus a log on disk to rebuild
 * it from).
 *
 * Each room keeps its last `size` messages, and no more than `bytes` of
 * bodies (but always its last message), in columns with a moving start
 * (trimming is O(1) amortized); messages older than the TTL are skipped by
 * reads and removed by the next append or sweep. A {@linkcode RetainedBudget}
 * bounds the bodies of all rooms together: past it, the least recently
 * written rooms lose their oldest messages first. Both bounds depend only on
 * the order of the pushes, so the log store's replay rebuilds the same set.
 * The columns are only ever appended to or replaced by a trimmed copy (or,
 * for a room's only message, by columns holding it too), never changed in
 * place, so a {@linkcode RetainedView} taken now stays valid while
 * the room goes on (the log store writes its snapshots from such views,
 * across turns).
 *
 * Why columns (typed arrays) and not an object per message: a store may
 * retain millions of messages (`--history-max-bytes`, 512 MiB by default).
 * An object per message cost ~93 B of V8 heap each beside its body, and
 * every one of them is marked by each mark-compact: with 1,000,000 retained
 * messages a full collection took 73-133 ms. In rows of a float64 array a
 * message costs 32 bytes outside the heap and a slot in the chunk list, and
 * the collector has a handful of objects per room to visit: 6-9 ms, and a
 * quarter less RSS per message (docs/perf-log.md, "stop 20"). A room that
 * holds a single message has no columns at all ({@linkcode OneRow}).
 */
import type { HistoryLimits, StoredMessage } from "../rooms/history_store.ts";

/** The first and the largest chunk a room copies bodies into. */
const MIN_CHUNK = 256;
const MAX_CHUNK = 64 * 1024;
/**
 * Bodies larger than this get a chunk of their own: a shared 64 KiB chunk
 * then ends at least three quarters full (a larger body that no longer
 * fits could leave one nearly half empty).
 */
const OWN_CHUNK = MAX_CHUNK / 4;

/** Whether a body of `n` bytes is kept in a chunk of its own. */
const ownsChunk = (n: number): boolean => n > OWN_CHUNK;

/**
 * A room's rows: offset, time, and the body's place in its chunk per
 * message. Rows `[0, length)` are written once and never changed.
 */
interface Rows {
  readonly length: number;
  offset(i: number): number;
  time(i: number): number;
  /** The body's length. */
  bytes(i: number): number;
  body(i: number): Uint8Array;
  /** The chunk the body is in. */
  chunk(i: number): Uint8Array;
}

/**
 * A room's messages in rows of one float64 array: offset, time, and the
 * body's start and end in its chunk; the chunks in a list beside it. One
 * typed array per room, not one per column, keeps a room that holds a
 * message or two small.
 */
class Columns implements Rows {
  readonly rows: Float64Array;
  readonly chunks: Uint8Array[];
  length = 0;

  constructor(readonly capacity: number) {
    this.rows = new Float64Array(capacity * 4);
    this.chunks = new Array(capacity);
  }

  /** Rows `[from, length)` in new columns with room for `capacity`. */
  copy(from: number, capacity: number): Columns {
    const out = new Columns(capacity);
    const n = this.length - from;
    out.rows.set(this.rows.subarray(from * 4, this.length * 4));
    for (let i = 0; i < n; i++) out.chunks[i] = this.chunks[from + i];
    out.length = n;
    return out;
  }

  offset(i: number): number {
    return this.rows[i * 4];
  }

  time(i: number): number {
    return this.rows[i * 4 + 1];
  }

  /** The body's length. */
  bytes(i: number): number {
    return this.rows[i * 4 + 3] - this.rows[i * 4 + 2];
  }

  body(i: number): Uint8Array {
    return this.chunks[i].subarray(this.rows[i * 4 + 2], this.rows[i * 4 + 3]);
  }

  chunk(i: number): Uint8Array {
    return this.chunks[i];
  }

  /** Writes row `length` (there is room for it). */
  append(
    offset: number,
    timeMs: number,
    chunk: Uint8Array,
    start: number,
    end: number,
  ): void {
    const row = this.length++;
    const rows = this.rows;
    rows[row * 4] = offset;
    rows[row * 4 + 1] = timeMs;
    rows[row * 4 + 2] = start;
    rows[row * 4 + 3] = end;
    this.chunks[row] = chunk;
  }
}

/**
 * The rows of a room that holds one message, its body a copy of its own:
 * no float64 array and no chunk to grow. Most rooms of a store with many
 * of them hold a message or two, and a typed array costs ~550 bytes of
 * memory beside its contents (its buffer, backing store and their
 * allocations): a room with one message took 2.2 KB with columns and a
 * 256-byte chunk, 1.6 KB this way (docs/perf-log.md, "stop 24"). Its
 * second message moves it to columns, its body into their first chunk;
 * or, in a room that keeps one message (`--history-size 1`, or a byte
 * bound the two do not fit), replaces it with a OneRow of its own.
 */
class OneRow implements Rows {
  readonly length = 1;
  readonly #offset: number;
  readonly #time: number;
  readonly #body: Uint8Array;

  constructor(offset: number, timeMs: number, body: Uint8Array) {
    this.#offset = offset;
    this.#time = timeMs;
    this.#body = body;
  }

  offset(_i: number): number {
    return this.#offset;
  }

  time(_i: number): number {
    return this.#time;
  }

  bytes(_i: number): number {
    return this.#body.length;
  }

  body(_i: number): Uint8Array {
    return this.#body;
  }

  chunk(_i: number): Uint8Array {
    return this.#body;
  }
}

/** A room's columns until its first message: shared, never written to. */
const NO_ROWS = new Columns(0);

/** A room's retained messages at one moment: rows `[start, end)`. */
export class RetainedView {
  readonly #cols: Rows;
  constructor(cols: Rows, readonly start: number, readonly end: number) {
    this.#cols = cols;
  }
  offsetAt(i: number): number {
    return this.#cols.offset(i);
  }
  timeAt(i: number): number {
    return this.#cols.time(i);
  }
  /** The body (a view into the room's chunk). */
  bodyAt(i: number): Uint8Array {
    return this.#cols.body(i);
  }
  /** The chunk the body is in. */
  chunkAt(i: number): Uint8Array {
    return this.#cols.chunk(i);
  }
}

/**
 * The body bytes retained by all the rooms of a store, bounded by
 * `maxBytes`. Rooms holding messages are kept in the order of their last
 * write, least recent first, in a list linked through the rooms themselves
 * (moved to the end on each write: O(1)).
 *
 * Why not a `Map` re-inserted on each write, as before: with several rooms
 * written in turn, every message was a `delete` and a `set`, and a Map
 * rehashes into a new table every few dozen of those. V8 keeps a rehashed
 * table linked to the next one, so once a table is in the old generation,
 * every later table stays alive until a mark-compact (docs/architecture.md,
 * "calls in flight").
 */
export class RetainedBudget {
  /** Body bytes retained now. */
  total = 0;
  /** The least and the most recently written rooms holding messages. */
  #first: RetainedRoom | undefined;
  #last: RetainedRoom | undefined;
  /**
   * The rooms holding nothing (made and not written yet, or emptied by a
   * bound), in the order they became empty: what a room bound forgets
   * first (`oldest()`).
   */
  #emptyFirst: RetainedRoom | undefined;
  #emptyLast: RetainedRoom | undefined;

  constructor(readonly maxBytes: number = Infinity) {}

  /** `r` was just made: it holds nothing. */
  added(r: RetainedRoom): void {
    this.#append(r, EMPTY);
  }

  /** `r` was just written to: it becomes the most recently written. */
  wrote(r: RetainedRoom): void {
    if (r === this.#last) return;
    this.#unlink(r);
    this.#append(r, HOLDING);
  }

  /** `r`, holding nothing, was written to (nothing is kept): last in line. */
  touched(r: RetainedRoom): void {
    if (r.budgetList !== EMPTY || r === this.#emptyLast) return;
    this.#unlink(r);
    this.#append(r, EMPTY);
  }

  /** `r` holds nothing any more. */
  emptied(r: RetainedRoom): void {
    if (r.budgetList === EMPTY) return;
    this.#unlink(r);
    this.#append(r, EMPTY);
  }

  /** `r` is forgotten: in no list. */
  forgotten(r: RetainedRoom): void {
    this.#unlink(r);
  }

  #append(r: RetainedRoom, list: typeof HOLDING | typeof EMPTY): void {
    const last = list === HOLDING ? this.#last : this.#emptyLast;
    r.budgetList = list;
    r.budgetPrev = last;
    r.budgetNext = undefined;
    if (last !== undefined) last.budgetNext = r;
    else if (list === HOLDING) this.#first = r;
    else this.#emptyFirst = r;
    if (list === HOLDING) this.#last = r;
    else this.#emptyLast = r;
  }

  #unlink(r: RetainedRoom): void {
    const list = r.budgetList;
    if (list === NONE) return;
    const { budgetPrev: prev, budgetNext: next } = r;
    if (prev !== undefined) prev.budgetNext = next;
    else if (list === HOLDING) this.#first = next;
    else this.#emptyFirst = next;
    if (next !== undefined) next.budgetPrev = prev;
    else if (list === HOLDING) this.#last = prev;
    else this.#emptyLast = prev;
    r.budgetPrev = r.budgetNext = undefined;
    r.budgetList = NONE;
  }

  /**
   * After a push to `r`: while over the bound, the least recently written
   * room loses its oldest message; `r`'s last message is kept.
   */
  enforce(r: RetainedRoom): void {
    while (this.total > this.maxBytes) {
      const first = this.#first;
      if (first === undefined || (first === r && r.size <= 1)) return;
      first.dropOldest();
    }
  }

  /** The rooms holding messages, least recently written first. */
  *rooms(): Generator<RetainedRoom> {
    for (let r = this.#first; r !== undefined;) {
      const next = r.budgetNext;
      yield r;
      r = next;
    }
  }

  /**
   * Every room, in the order a bound on the number of rooms forgets them:
   * those holding nothing (longest empty first), then those holding
   * messages (least recently written first). O(1) per room taken.
   */
  *oldest(): Generator<RetainedRoom> {
    for (let r = this.#emptyFirst; r !== undefined;) {
      const next = r.budgetNext;
      yield r;
      r = next;
    }
    yield* this.rooms();
  }
}

/** Which of its budget's lists a room is in. */
const NONE = 0;
const HOLDING = 1;
const EMPTY = 2;

export class RetainedRoom {
  /** Its {@linkcode RetainedBudget}'s list of rooms; only the budget uses these. */
  budgetPrev: RetainedRoom | undefined;
  budgetNext: RetainedRoom | undefined;
  budgetList: 0 | 1 | 2 = NONE;
  /** The last offset handed out (0: none yet). */
  last = 0;
  /** When the last message came (or the room was created). */
  lastMs: number;
  #cols: Rows = NO_ROWS;
  #start = 0;
  /** Body bytes of the retained messages. */
  #bytes = 0;
  readonly #budget: RetainedBudget;
  /**
   * Bodies are copied into chunks (doubling from 256 bytes to 64 KiB), not
   * one buffer each: a buffer per message costs an allocation (~0.3 µs) and
   * several hundred bytes of RSS beside a short body. History is FIFO, so a
   * chunk is let go soon after its last message is trimmed (`#dropTo` says
   * how soon).
   */
  #chunk: Uint8Array | undefined;
  #used = 0;
  /**
   * Bytes of the chunks that only dropped rows still point at: garbage the
   * columns keep reachable until their next copy (rows are never changed in
   * place, for the views).
   */
  #dead = 0;

  constructor(
    readonly epoch: string,
    nowMs: number,
    budget: RetainedBudget = new RetainedBudget(),
  ) {
    this.lastMs = nowMs;
    this.#budget = budget;
    budget.added(this);
  }

  get size(): number {
    return this.#cols.length - this.#start;
  }

  /** Body bytes retained. */
  get bytes(): number {
    return this.#bytes;
  }

  /**
   * Keeps a copy of `body` (it may be a view into a larger buffer, a
   * received chunk, that must not be kept alive) as message `offset`.
   */
  push(
    offset: number,
    body: Uint8Array,
    timeMs: number,
    limits: HistoryLimits,
  ): void {
    // Nothing is kept (`--history-size 0`): no copy, no columns.
    if (limits.size === 0 && this.size === 0) {
      // Nothing kept, but written now: the last to go under a room bound.
      this.#budget.touched(this);
      return;
    }
    const n = body.length;
    const one = this.#cols instanceof OneRow;
    if (
      this.#cols === NO_ROWS ||
      // The new message will be the room's only one (`--history-size 1`, a
      // latest-value room, or a byte bound the two do not fit): it replaces
      // the row instead of moving it into columns and a chunk. The old row
      // is left as it is, for views taken before.
      (one && (limits.size <= 1 ||
        (limits.bytes !== undefined && this.#bytes + n > limits.bytes)))
    ) {
      if (one) {
        this.#budget.total -= this.#bytes;
        this.#bytes = 0;
      }
      // Its only message: a copy of its own (see OneRow).
      const copy = new Uint8Array(n);
      copy.set(body);
      this.#cols = new OneRow(offset, timeMs, copy);
      this.#start = 0;
      this.#wrote(n, limits, timeMs);
      return;
    }
    if (one) this.#toColumns();
    let chunk = this.#chunk;
    let start = 0;
    if (ownsChunk(n)) {
      // A chunk of its own, exactly its size; the chunk being filled goes
      // on with the next smaller body (ending it here would restart its
      // growth from 256 bytes and leave it mostly empty).
      // Not body.slice(): a Node Buffer's slice() is a view, not a copy.
      chunk = new Uint8Array(n);
      chunk.set(body);
    } else {
      if (chunk === undefined || this.#used + n > chunk.length) {
        const next = Math.min(
          this.#chunkCap(limits),
          2 * (chunk?.length ?? MIN_CHUNK / 2),
        );
        chunk = this.#chunk = new Uint8Array(Math.max(n, next));
        this.#used = 0;
      }
      start = this.#used;
      chunk.set(body, start);
      this.#used = start + n;
    }
    // Columns now: a OneRow was moved into them above.
    let cols = this.#cols as Columns;
    if (cols.length === cols.capacity) {
      // Full: the live rows into new columns with room to double.
      const live = cols.length - this.#start;
      cols = this.#cols = cols.copy(this.#start, 2 * (live + 1));
      this.#start = 0;
      this.#dead = 0;
    }
    cols.append(offset, timeMs, chunk, start, start + n);
    this.#wrote(n, limits, timeMs);
  }

  /**
   * A second message comes: the first moves into columns, its body into the
   * chunk they will share (unless it is large enough for a chunk of its
   * own), so that a room of two holds what it held before OneRow.
   */
  #toColumns(): void {
    const one = this.#cols;
    const cols = new Columns(2);
    const body = one.body(0);
    const n = body.length;
    if (ownsChunk(n)) cols.append(one.offset(0), one.time(0), body, 0, n);
    else {
      // The first chunk's size, as a room's first chunk always was.
      const chunk = this.#chunk = new Uint8Array(Math.max(n, MIN_CHUNK));
      chunk.set(body);
      this.#used = n;
      cols.append(one.offset(0), one.time(0), chunk, 0, n);
    }
    this.#cols = cols;
    this.#start = 0;
    this.#dead = 0;
  }

  /** A body of `n` bytes was just kept: the budget and the bounds. */
  #wrote(n: number, limits: HistoryLimits, timeMs: number): void {
    this.#bytes += n;
    this.#budget.total += n;
    this.#budget.wrote(this);
    this.trim(limits, timeMs);
    this.#budget.enforce(this);
  }

  /**
   * The largest chunk for this room: about half of what it retains (its
   * byte bound, or `size` × its average body so far), 256 B to 64 KiB, so
   * that a room with a small `size` does not hold two 64 KiB chunks for a
   * few retained bytes.
   */
  #chunkCap(limits: HistoryLimits): number {
    const count = this.size;
    const average = count > 0 ? this.#bytes / count : MIN_CHUNK;
    const want = Math.min(limits.bytes ?? Infinity, limits.size * average);
    return Math.max(MIN_CHUNK, Math.min(MAX_CHUNK, want / 2));
  }

  /** Drops the messages before `to` (their bytes leave the budget). */
  #dropTo(to: number): void {
    const cols = this.#cols;
    const length = cols.length;
    let freed = 0;
    for (let i = this.#start; i < to; i++) {
      const n = cols.bytes(i);
      freed += n;
      if (ownsChunk(n)) {
        // A chunk of its own: dead with its row.
        this.#dead += n;
        continue;
      }
      // The shared chunks' rows are consecutive but for own chunks' rows
      // among them: past its last row, no kept row points at a chunk. Each
      // own row is skipped here for at most one shared row before it.
      let j = i + 1;
      while (j < length && ownsChunk(cols.bytes(j))) j++;
      const next = j < length ? cols.chunk(j) : this.#chunk;
      if (cols.chunk(i) !== next) this.#dead += cols.chunk(i).length;
    }
    this.#bytes -= freed;
    this.#budget.total -= freed;
    this.#start = to;
    if (to === length) {
      // Empty: nothing kept reachable, not even the chunk being filled
      // (a room the budget emptied may stay silent for good).
      this.#cols = NO_ROWS;
      this.#start = 0;
      this.#chunk = undefined;
      this.#used = 0;
      this.#dead = 0;
      this.#budget.emptied(this);
    } else if (
      (to > 64 && to * 2 > length) ||
      this.#dead > this.#bytes / 2 + MAX_CHUNK
    ) {
      // Mostly dropped rows, or dead chunk bytes past half the live ones:
      // the rest into new columns, which lets go of the dropped rows'
      // chunks. So a room holds at most about twice what it keeps (a full
      // 64 KiB shared chunk is 3/4 used, its dead ones are under half of
      // it) plus the chunks of its growth from 256 bytes. A copy either
      // follows as many drops as it copies rows, or frees 64 KiB and half
      // of what the room keeps, so copying stays cheap beside the bodies'
      // own copies.
      // Never a OneRow here: it has one row and nothing dead.
      this.#cols = (cols as Columns).copy(to, 2 * (length - to));
      this.#start = 0;
      this.#dead = 0;
    }
  }

  /** Drops the oldest retained message (the store-wide byte bound). */
  dropOldest(): void {
    if (this.size > 0) this.#dropTo(this.#start + 1);
  }

  /** Lets go of everything: the room is forgotten. */
  release(): void {
    this.#dropTo(this.#cols.length);
    this.#budget.forgotten(this);
  }

  /**
   * Drops what is over the size limit or the byte limit (keeping the last
   * message) or older than the TTL.
   */
  trim(limits: HistoryLimits, nowMs: number): void {
    const cols = this.#cols;
    const length = cols.length;
    let start = Math.max(this.#start, length - limits.size);
    if (limits.bytes !== undefined) {
      let bytes = this.#bytes;
      for (let i = this.#start; i < start; i++) {
        bytes -= cols.bytes(i);
      }
      while (bytes > limits.bytes && length - start > 1) {
        bytes -= cols.bytes(start);
        start++;
      }
    }
    if (limits.ttlMs > 0) {
      const cutoff = nowMs - limits.ttlMs;
      while (start < length && cols.time(start) < cutoff) start++;
    }
    if (start !== this.#start || length === start) this.#dropTo(start);
  }

  read(after: number, limit: number, cutoff: number): StoredMessage[] {
    const cols = this.#cols;
    const first = this.#start;
    const length = cols.length;
    if (first >= length) return [];
    let i = Math.max(first, first + after + 1 - cols.offset(first));
    while (i < length && cols.time(i) < cutoff) i++;
    const out: StoredMessage[] = [];
    for (; i < length && out.length < limit; i++) {
      out.push({
        offset: cols.offset(i),
        body: cols.body(i),
        timeMs: cols.time(i),
      });
    }
    return out;
  }

  /**
   * Bytes of the chunks this room keeps reachable (retained bodies, the
   * chunk being filled, and chunks only dropped rows still point at): what
   * it holds in memory, as against {@linkcode bytes}. O(rows).
   */
  heldBytes(): number {
    const seen = new Set<Uint8Array>();
    const cols = this.#cols;
    for (let i = 0; i < cols.length; i++) seen.add(cols.chunk(i));
    if (this.#chunk !== undefined) seen.add(this.#chunk);
    let held = 0;
    for (const c of seen) held += c.length;
    return held;
  }

  /** The retained messages as they are now; later changes leave it alone. */
  view(): RetainedView {
    return new RetainedView(this.#cols, this.#start, this.#cols.length);
  }
}

/**
 * Trims every room to the limits at `nowMs` and returns the names of the
 * rooms that are empty and were silent for longer than the TTL: a store
 * forgets them, so that their next message starts a new epoch and the map
 * does not keep every name ever used.
 */
export function expiredRooms(
  rooms: ReadonlyMap<string, RetainedRoom>,
  limits: HistoryLimits,
  nowMs: number,
): string[] {
  const expired: string[] = [];
  for (const [name, r] of rooms) {
    r.trim(limits, nowMs);
    if (r.size === 0 && nowMs - r.lastMs > limits.ttlMs) expired.push(name);
  }
  return expired;
}

/**
 * The rooms a store goes down to once over a bound of `max`: `max` less a
 * 64th, so that a store at its bound frees rooms once per `max / 64` new
 * ones rather than one at every new one.
 */
export function afterBound(max: number): number {
  return max - Math.ceil(max / 64);
}

/** How many rooms a store holding `size` forgets (0 within `max`). */
function overBound(size: number, max: number): number {
  return size <= max ? 0 : size - afterBound(max);
}

/**
 * The rooms a store of `size` rooms forgets for a bound of `max`, in the
 * budget's order (`oldest()`), never the one named `keep`.
 */
export function roomsToForget<
  R extends RetainedRoom & { readonly name: string },
>(
  budget: RetainedBudget,
  size: number,
  max: number,
  keep?: string,
): R[] {
  const over = overBound(size, max);
  const gone: R[] = [];
  for (const r of budget.oldest()) {
    if (gone.length === over) break;
    if ((r as R).name !== keep) gone.push(r as R);
  }
  return gone;
}

/**
 * A room's retained messages after offset `after`, at most `limit`, none
 * older than the TTL at `nowMs`; none for a room not kept. The `read` of
 * the stores that keep their rooms here (memory, log).
 */
export function readRetained(
  rooms: ReadonlyMap<string, RetainedRoom>,
  name: string,
  after: number,
  limit: number,
  limits: HistoryLimits,
  nowMs: number,
  epoch: string | undefined,
): Promise<StoredMessage[]> {
  const r = rooms.get(name);
  if (r === undefined || (epoch !== undefined && r.epoch !== epoch)) {
    return Promise.resolve([]);
  }
  const cutoff = limits.ttlMs > 0 ? nowMs - limits.ttlMs : -Infinity;
  return Promise.resolve(r.read(after, limit, cutoff));
}

/**
 * Runs `sweep` (expired messages and rooms) every tenth of the TTL, 1-60 s;
 * nothing without a TTL. Returns the timer to clear on close.
 */
export function sweepEvery(
  ttlMs: number,
  sweep: () => void,
): ReturnType<typeof setInterval> | undefined {
  if (ttlMs <= 0) return undefined;
  return setInterval(sweep, Math.min(60_000, Math.max(1000, ttlMs / 10)));
}
