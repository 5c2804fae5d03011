/**
 * Room history and cross-core delivery in Redis (`--broker redis://...`):
 * cores that share a Redis share rooms.
 *
 * Storing is one Lua script per room per batch (redis_scripts.ts), with the
 * batch's bodies packed into one argument: it takes the room's next offsets,
 * XADDs the messages to the room's stream (trimmed to about
 * `--history-size`, expiring after `--history-ttl` of silence) and
 * PUBLISHes the batch once, atomically, so offsets are one sequence per
 * room across every core and a message is published only once stored.
 *
 * Delivery: a core SUBSCRIBEs to a room's channel only while it has local
 * subscribers there (`follow()`), one subscription per room per core, and
 * its RoomFeed delivers every message once, in offset order, filling what
 * PUB/SUB lost from the stream. The publishing core delivers its own
 * messages the same way, so every core shows one order.
 *
 * Broker down: `append()` rejects at once (no offline queue: nothing is
 * acknowledged that is not stored), `status().state` is "down"; the client
 * reconnects with backoff (50 ms doubling to 2 s), resubscribes, and every
 * followed room catches up from its stream with no gap.
 *
 * Broker stalled (a Redis that holds the connection open but does not
 * answer: paused, swapping, a script stuck, a partition that drops packets
 * without a reset): every command fails after `timeoutMs`, even once sent,
 * and a PING every second notices a stall with no traffic, so publishes get
 * UNAVAILABLE and `status().state` is "down" until Redis answers again.
 *
 * The client is node-redis (`redis` on npm); see the README for why.
 *
 * @module
 */
import { Buffer } from "node:buffer";
import { createClient, ErrorReply, RESP_TYPES, TimeoutReadError } from "redis";
import { BrokerUnavailableError } from "./broker_unavailable_error.ts";
import {
  APPEND_SCRIPT,
  ID_BLOCK_SCRIPT,
  ID_CLOCK_ZERO_S,
  packBodies,
  POSITION_SCRIPT,
  roomKeys,
} from "./redis_scripts.ts";
import { type Batch, decodeBatch, RoomFeed } from "./room_feed.ts";
import {
  type Appended,
  type AppendEntry,
  type FollowDeliver,
  type HistoryStore,
  type IdBlocks,
  newEpoch,
  type RoomFollow,
  type RoomPosition,
  type StoredMessage,
  type StoreStatus,
} from "../rooms/history_store.ts";

/** The broker's health: the store's, plus what only a broker has. */
export interface BrokerStatus extends StoreStatus {
  /** Rooms this core follows (one PUB/SUB subscription each). */
  readonly rooms: number;
  /** Messages recovered from streams after PUB/SUB lost them. */
  readonly filled: number;
}

/** Options of {@linkcode connectRedisBroker}. */
export interface RedisBrokerOptions {
  /** `redis://[[user]:password@]host:port[/db]`, or `rediss://` for TLS. */
  url: string;
  /** PEM of the CA(s) a `rediss://` server's certificate must chain to. */
  ca?: string;
  /** Messages kept per room (approximately: Redis trims in whole nodes). */
  size: number;
  /** History TTL in ms (0: none); also how long a silent room's keys live. */
  ttlMs: number;
  /**
   * How long a command waits for Redis's answer before it fails (and the
   * broker reports "down" until Redis answers again); default 5,000 ms.
   */
  timeoutMs?: number;
  /**
   * Idempotency scopes a room keeps at most (default
   * {@linkcode DEFAULT_KEYS_PER_ROOM}); past it the oldest go first.
   */
  keysPerRoom?: number;
  /** The clock (tests pass their own). */
  now?: () => number;
  /** Message ids per block (default {@linkcode ID_BLOCK}; tests pass less). */
  idBlock?: number;
}

/** Default of {@linkcode RedisBrokerOptions.keysPerRoom}. */
export const DEFAULT_KEYS_PER_ROOM = 100_000;
/** Default of {@linkcode RedisBrokerOptions.timeoutMs}. */
export const DEFAULT_BROKER_TIMEOUT_MS = 5000;
/** How often an idle command connection is PINGed (at most). */
const PING_MS = 1000;
/** The key a core whose writes Redis refused sets to learn it takes them again. */
const PROBE_KEY = "chat:write-probe";

export { BrokerUnavailableError };

/** How long a room created by a subscription lives without messages. */
const EMPTY_ROOM_TTL_MS = 24 * 3600_000;
/**
 * Errors a reconnect cannot fix: Redis refused the credentials, or the TLS
 * certificate does not verify (node:tls's codes).
 */
function permanent(e: Error): boolean {
  if (
    /^(WRONGPASS|NOAUTH|NOPERM|ERR AUTH|ERR invalid password)/.test(e.message)
  ) {
    return true;
  }
  const code = String((e as { code?: unknown }).code ?? "");
  return /CERT|SELF_SIGNED|UNABLE_TO_VERIFY|UNABLE_TO_GET_ISSUER/.test(code);
}

/** `p`, or the error `late()` makes once `ms` have passed; no timer left. */
async function within<T>(
  p: Promise<T>,
  ms: number,
  late: () => Error,
): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(late()), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** Reconnect backoff: 50 ms doubling to 2 s. */
const reconnectStrategy = (retries: number) =>
  Math.min(2000, 50 * 2 ** Math.min(retries, 6));

/** The Redis broker: a history store that several cores share. */
export interface RedisBroker extends HistoryStore {
  readonly kind: "redis";
  follow(room: string, deliver: FollowDeliver): Promise<RoomFollow>;
  status(): BrokerStatus;
  /** Any other Redis command (presence), on the command connection. */
  command(args: string[]): Promise<unknown>;
}

const utf8 = new TextDecoder("utf-8", { ignoreBOM: true });
const asText = (v: unknown) =>
  typeof v === "string" ? v : utf8.decode(v as Uint8Array);

/**
 * Fresh epochs for appends, one per script call (the script keeps it only
 * when the room starts afresh): 8 random hex digits per process and a
 * counter from a random start, 16 characters like `newEpoch()`, without
 * eight random bytes and their hex per append.
 */
function epochSource(): { next(): string } {
  const prefix = newEpoch().slice(0, 8);
  let n = crypto.getRandomValues(new Uint32Array(1))[0];
  return {
    next() {
      n = (n + 1) >>> 0;
      return prefix + n.toString(16).padStart(8, "0");
    },
  };
}

/**
 * Message ids per block a core takes from Redis (`ID_BLOCK_SCRIPT`), and
 * takes again as it uses them up. Block numbers count from the tenths of a
 * second since 2026 (so that a Redis that lost its counter does not hand
 * out a block again), and 2^34 of them times 2^19 ids stay exact
 * JavaScript numbers (2^53) for 54 years. A block is one Redis call per
 * 524,288 messages.
 */
export const ID_BLOCK = 2 ** 19;
/** The block of earlier versions: one per core start, in a key of its own. */
const OLD_ID_BLOCK = 1_000_000_000;
const ID_BLOCK_KEY = "chat:msgid-blocks";
const OLD_ID_BLOCK_KEY = "chat:msgid-block";

/**
 * Connects to Redis and resolves once both connections (commands and
 * PUB/SUB) are up; rejects with BrokerUnavailableError if it cannot.
 */
export async function connectRedisBroker(
  options: RedisBrokerOptions,
): Promise<RedisBroker> {
  const now = options.now ?? Date.now;
  const timeoutMs = options.timeoutMs ?? DEFAULT_BROKER_TIMEOUT_MS;
  // rediss:// turns TLS on in node-redis; `ca` replaces the system roots.
  const socket = {
    reconnectStrategy,
    connectTimeout: 2000,
    ...(options.ca !== undefined ? { ca: options.ca } : {}),
  };
  const cmd = createClient({
    url: options.url,
    socket,
    disableOfflineQueue: true,
    // A Redis that stops answering must not hold publishes, reads and
    // presence forever: a command fails after timeoutMs even once sent
    // (its late reply is discarded; the connection stays open and in
    // order), and the PING notices a stall while nothing else is asked.
    commandOptions: { timeout: timeoutMs, rejectInFlight: true },
    pingInterval: Math.min(PING_MS, timeoutMs),
  }).withTypeMapping({ [RESP_TYPES.BLOB_STRING]: Buffer });
  const sub = createClient({ url: options.url, socket });
  /**
   * The command connection is up but its last command failed (a timeout,
   * or an error from the PING): down until a command is answered.
   */
  let stalled = false;
  /**
   * Redis refused the last append with an error of its own (out of memory
   * under `maxmemory`, MISCONF, a read-only replica): down, as an embedded
   * store whose commit failed, until a write is taken again: an append, or
   * the probe `writesRefused()` writes every second meanwhile (its PINGs
   * still answer, so they cannot tell; and a core out of the edge's rotation
   * for its NOT_SERVING would get no append to tell it either).
   */
  let refused = false;
  let probeTimer: ReturnType<typeof setInterval> | undefined;
  /** While starting: fails the start-up (see `permanent`). */
  let startFailed: ((e: Error) => void) | undefined;
  /** While starting: the last error, for the start-up's timeout. */
  let startError: string | undefined;
  /** Connected and the scripts loaded once (start-up is over). */
  let readyOnce = false;
  let lastError: string | undefined;
  let closed = false;
  const counters = { commits: 0, failed: 0, lastMs: 0, totalMs: 0 };
  const feeds = new Map<string, { feed: RoomFeed }>();
  const shas = { append: "", position: "" };
  const stallError = (e: unknown) =>
    e instanceof TimeoutReadError
      ? `Redis did not answer within ${timeoutMs} ms`
      : (e as Error).message;

  // The owner hears of every change of status().state (health watchers).
  const hooks = { changed: () => {} };
  let reported: "ok" | "down" = "down";
  const current = () =>
    cmd.isReady && sub.isReady && !stalled && !refused && readyOnce
      ? "ok"
      : "down";
  const maybeChanged = () => {
    const now = current();
    if (now === reported || closed) return;
    reported = now;
    hooks.changed();
  };
  /** Redis takes writes again: ok (if nothing else is wrong). */
  const writesTaken = () => {
    clearInterval(probeTimer);
    probeTimer = undefined;
    if (!refused) return;
    refused = false;
    maybeChanged();
  };
  /** Redis refused a write with `message`: down, and probed until it takes one. */
  const writesRefused = (message: string) => {
    refused = true;
    lastError = message;
    maybeChanged();
    probeTimer ??= setInterval(() => {
      if (!cmd.isReady || stalled) return;
      // A write as small as Redis takes (SET is refused under maxmemory
      // with noeviction, MISCONF and READONLY alike), gone by itself.
      cmd.set(PROBE_KEY, "1", { PX: 10_000 }).then(writesTaken, () => {});
    }, PING_MS);
  };
  cmd.on("error", (e: Error) => {
    starting(e);
    // A dropped connection is seen through isReady; a failed PING on a
    // connection still up is a stall.
    stalled = true;
    lastError = stallError(e);
    maybeChanged();
  });
  sub.on("error", (e: Error) => {
    starting(e);
    lastError = e.message;
    maybeChanged();
  });
  for (const client of [cmd, sub]) {
    client.on("end", maybeChanged);
    client.on("reconnecting", maybeChanged);
  }
  /**
   * An error while starting: one a retry cannot fix (a refused password, a
   * certificate that does not verify) fails the start-up at once, since
   * node-redis would retry it for ever; any other (refused, reset, not
   * there yet) is retried until the start-up's time is up.
   */
  const starting = (e: Error) => {
    if (startFailed === undefined) return;
    startError = e.message;
    if (permanent(e)) startFailed(e);
  };
  /** A command failed: a timeout means Redis stalled. */
  const failed = (e: unknown) => {
    if (!(e instanceof TimeoutReadError)) return;
    stalled = true;
    lastError = stallError(e);
    maybeChanged();
  };
  /** Redis answered a command: a stall is over. */
  const answered = () => {
    if (!stalled || closed) return;
    stalled = false;
    maybeChanged();
    // Reads that failed while it stalled: the feeds try again now.
    if (current() === "ok") catchUpAll();
  };
  cmd.on("ping-interval", answered);
  let recheck: ReturnType<typeof setTimeout> | undefined;
  const catchUpAll = () => {
    for (const { feed } of feeds.values()) void feed.catchUp();
  };
  sub.on("ready", () => {
    if (!readyOnce || closed) return;
    // Reconnected: PUB/SUB lost whatever was published meanwhile. Once
    // more a second later, for what other cores published while the
    // channels were being subscribed again.
    catchUpAll();
    clearTimeout(recheck);
    recheck = setTimeout(catchUpAll, 1000);
    maybeChanged();
  });
  cmd.on("ready", () => {
    stalled = false;
    maybeChanged();
    void loadScripts().catch(() => {});
    // Feeds fill their gaps over this connection: a fill that failed while
    // it was down is tried again now (with PUB/SUB still up, nothing else
    // would until the room's next batch).
    if (readyOnce && !closed) catchUpAll();
  });

  async function loadScripts(): Promise<void> {
    shas.append = asText(await cmd.scriptLoad(APPEND_SCRIPT));
    shas.position = asText(await cmd.scriptLoad(POSITION_SCRIPT));
  }

  /** EVALSHA, loading the scripts again after a Redis restart (NOSCRIPT). */
  async function evalScript(
    which: "append" | "position",
    keys: string[],
    args: (string | Uint8Array)[],
  ): Promise<unknown> {
    const run = () =>
      cmd.sendCommand([
        "EVALSHA",
        shas[which],
        String(keys.length),
        ...keys,
        ...args.map((a) =>
          typeof a === "string"
            ? a
            : Buffer.from(a.buffer, a.byteOffset, a.byteLength)
        ),
      ]);
    let reply;
    try {
      reply = await run();
    } catch (e) {
      if (!String((e as Error).message).startsWith("NOSCRIPT")) throw e;
      await loadScripts();
      reply = await run();
    }
    answered();
    return reply;
  }

  /**
   * The error a caller gets. A command that failed after it was sent, other
   * than by Redis's own error reply, may have run or still run: one that
   * timed out when Redis wakes up, one whose connection closed before the
   * answer came (a Redis restart) already. `sent` says what that means for
   * it.
   */
  function unavailable(e: unknown, sent = ""): BrokerUnavailableError {
    if (e instanceof BrokerUnavailableError) return e;
    failed(e);
    const after = sent && !(e instanceof ErrorReply) ? `; ${sent}` : "";
    return new BrokerUnavailableError(
      `broker unavailable: ${stallError(e) ?? e}${after}`,
    );
  }

  const idBlock = options.idBlock ?? ID_BLOCK;
  /** A new block's number, never handed out before (`ID_BLOCK_SCRIPT`). */
  async function takeIdBlock(): Promise<number> {
    const block = Number(
      await cmd.sendCommand([
        "EVAL",
        ID_BLOCK_SCRIPT,
        "2",
        ID_BLOCK_KEY,
        OLD_ID_BLOCK_KEY,
        String(Math.floor(now() / 100) - ID_CLOCK_ZERO_S * 10),
        String(OLD_ID_BLOCK / idBlock),
      ]),
    );
    if (!((block + 1) * idBlock <= Number.MAX_SAFE_INTEGER)) {
      throw new Error(
        `Redis's message id block ${block} is past 2^53 (${ID_BLOCK_KEY})`,
      );
    }
    return block;
  }

  // A Redis that accepts the connection but never answers would hold the
  // handshake for ever (connectTimeout covers only the TCP connect).
  const startMs = Math.max(timeoutMs, 2000);
  let block: number;
  try {
    block = await Promise.race([
      within(
        (async () => {
          await Promise.all([cmd.connect(), sub.connect()]);
          await loadScripts();
          return await takeIdBlock();
        })(),
        startMs,
        () =>
          new Error(
            `Redis did not answer within ${startMs} ms${
              startError ? ` (last error: ${startError})` : ""
            }`,
          ),
      ),
      new Promise<never>((_, reject) => startFailed = reject),
    ]);
  } catch (e) {
    closed = true;
    await Promise.all([cmd.destroy(), sub.destroy()]).catch(() => {});
    throw unavailable(e);
  } finally {
    startFailed = undefined;
  }
  readyOnce = true;
  const epochs = epochSource();
  const ttlArg = String(options.ttlMs);
  const sizeArg = String(options.size);
  const keysPerRoomArg = String(options.keysPerRoom ?? DEFAULT_KEYS_PER_ROOM);
  const lastMessageId = block * idBlock;
  // The block in use ends at `idEnd`; the hub asks for the next once half
  // of it is used (`askAfter`), so that it is there before the last id goes.
  let idEnd = lastMessageId + idBlock;
  let nextBlock: number | undefined;
  let takingBlock = false;
  const askIdBlock = () => {
    if (takingBlock || nextBlock !== undefined || closed) return;
    takingBlock = true;
    takeIdBlock().then((b) => nextBlock = b, (e) => failed(e)).finally(() =>
      takingBlock = false
    );
  };
  const idBlocks: IdBlocks = {
    get end() {
      return idEnd;
    },
    get askAfter() {
      return idEnd - idBlock / 2;
    },
    ask: askIdBlock,
    next() {
      const b = nextBlock;
      if (b === undefined) {
        askIdBlock();
        return undefined;
      }
      nextBlock = undefined;
      idEnd = (b + 1) * idBlock;
      return b * idBlock;
    },
  };

  /**
   * Appends a room's share of a batch; each entry's offset and epoch, and
   * for one whose idempotency scope the room had already, that message's
   * (redis_scripts.ts, APPEND_SCRIPT).
   */
  async function appendRoom(
    room: string,
    group: AppendEntry[],
  ): Promise<Appended[]> {
    const k = roomKeys(room);
    const bodies = new Array<Uint8Array>(group.length);
    const keys = new Array<string>(group.length);
    let windowMs = 0;
    for (let i = 0; i < group.length; i++) {
      const { body, key } = group[i];
      bodies[i] = body;
      // The id escaped: the script splits `id time scope` at spaces, and a
      // streamed message's id is its client's, any text (a server id,
      // msg_N, is the same escaped).
      keys[i] = key === undefined
        ? ""
        : `${encodeURIComponent(key.id)} ${key.timeMs} ${key.scope}`;
      if (key !== undefined) windowMs = key.windowMs;
    }
    // What this core delivered of the room: a Redis that went back to an
    // older snapshot moves on past it (redis_scripts.ts, `rewound`).
    const feed = feeds.get(room)?.feed;
    const reply = await evalScript("append", [
      k.epoch,
      k.seq,
      k.log,
      k.keys,
      k.keyTimes,
    ], [
      epochs.next(),
      ttlArg,
      sizeArg,
      k.channel,
      String(group[group.length - 1].timeMs),
      String(group.length),
      packBodies(bodies),
      feed === undefined ? "" : feed.epoch,
      feed === undefined ? "0" : String(feed.last),
      String(windowMs),
      keysPerRoomArg,
      ...keys,
    ]) as (Uint8Array | number)[];
    const epoch = asText(reply[0] as Uint8Array);
    let offset = Number(reply[1]);
    return group.map((_, i): Appended => {
      const was = asText(reply[2 + i] as Uint8Array);
      if (was === "") return { epoch, offset: offset++ };
      const [at, id, timeMs] = was.split(" ");
      return {
        epoch,
        offset: Number(at),
        repeatOf: { id: unescapeId(id), timeMs: Number(timeMs) },
      };
    });
  }

  /**
   * The room's position; `known` is what this core's feed delivered of it,
   * which a Redis that went back to an older snapshot moves on past.
   */
  async function position(
    room: string,
    known?: RoomPosition,
  ): Promise<RoomPosition> {
    const k = roomKeys(room);
    try {
      const reply = await evalScript("position", [k.epoch, k.seq, k.log], [
        newEpoch(),
        String(options.ttlMs > 0 ? options.ttlMs : EMPTY_ROOM_TTL_MS),
        known?.epoch ?? "",
        String(known?.offset ?? 0),
      ]) as [Uint8Array, number];
      return { epoch: asText(reply[0]), offset: Number(reply[1]) };
    } catch (e) {
      throw unavailable(e);
    }
  }

  async function read(
    room: string,
    after: number,
    limit: number,
    epoch?: string,
  ): Promise<StoredMessage[]> {
    if (limit <= 0) return [];
    const k = roomKeys(room);
    let entries;
    try {
      if (epoch === undefined) {
        entries = await cmd.xRange(k.log, `(${after}-0`, "+", { COUNT: limit });
      } else {
        // The epoch and the stream in one transaction: a room that started
        // afresh meanwhile must not hand its new offsets out as the old.
        const [current, range] = await cmd.multi()
          .get(k.epoch)
          .xRange(k.log, `(${after}-0`, "+", { COUNT: limit })
          .exec();
        if (
          current == null || asText(current as unknown as Uint8Array) !== epoch
        ) {
          return [];
        }
        entries = range as unknown as Awaited<ReturnType<typeof cmd.xRange>>;
      }
    } catch (e) {
      throw unavailable(e);
    }
    answered();
    const cutoff = options.ttlMs > 0 ? now() - options.ttlMs : -Infinity;
    const out: StoredMessage[] = [];
    for (const e of entries ?? []) {
      const fields = e.message as unknown as Record<string, Uint8Array>;
      if (Number(asText(fields.t)) < cutoff) continue;
      out.push({
        offset: Number(asText(e.id).split("-")[0]),
        body: new Uint8Array(fields.b),
      });
    }
    return out;
  }

  /**
   * The stream after `after`, with the epoch it belongs to; `epoch` is the
   * feed's, whose offset `after` is (after a reconnect, this is where a
   * Redis that came back with older data is noticed).
   */
  async function fill(
    room: string,
    after: number,
    limit: number,
    epoch: string,
  ) {
    const pos = await position(room, { epoch, offset: after });
    const messages = pos.offset > after
      ? await read(room, after, limit, pos.epoch)
      : [];
    // The room's history restarted: the feed starts over at offset 1.
    if (pos.offset < after) {
      return { epoch: pos.epoch, first: 1, bodies: [] } as Batch;
    }
    const bodies: Uint8Array[] = [];
    let first = after + 1;
    for (const m of messages) {
      if (bodies.length === 0) first = m.offset;
      else if (m.offset !== first + bodies.length) break;
      bodies.push(m.body);
    }
    return { epoch: pos.epoch, first, bodies } as Batch;
  }

  const broker: RedisBroker = {
    kind: "redis",
    checksKeys: true,
    lastMessageId,
    idBlocks,
    async append(entries, _lastMessageId) {
      const t0 = performance.now();
      const groups = new Map<string, AppendEntry[]>();
      for (const e of entries) {
        let g = groups.get(e.room);
        if (g === undefined) groups.set(e.room, g = []);
        g.push(e);
      }
      try {
        // Down, or stalled: told at once, not after another timeout (the
        // PING says when Redis answers again).
        if (!cmd.isReady || stalled) {
          throw new BrokerUnavailableError(
            `broker unavailable: ${lastError ?? "not connected"}`,
          );
        }
        const rooms = [...groups.keys()];
        const results = await Promise.all(
          rooms.map((r) => appendRoom(r, groups.get(r)!)),
        );
        const at = new Map(rooms.map((r, i) => [r, { of: results[i], n: 0 }]));
        const out = entries.map((e) => {
          const r = at.get(e.room)!;
          return r.of[r.n++];
        });
        if (refused) writesTaken();
        const ms = performance.now() - t0;
        counters.commits++;
        counters.lastMs = ms;
        counters.totalMs += ms;
        broker.onCommit?.(ms, true);
        return out;
      } catch (e) {
        counters.failed++;
        if (e instanceof ErrorReply) writesRefused(e.message);
        broker.onCommit?.(performance.now() - t0, false);
        throw unavailable(e, "the message may still be stored");
      }
    },
    position,
    read,
    async follow(room, deliver) {
      const existing = feeds.get(room);
      if (existing) {
        // One subscription per room per core: a second follower of the
        // same room on this core would get every message twice.
        throw new Error(`broker: room ${room} is already followed`);
      }
      // A SUBSCRIBE would wait in the client's queue until Redis is back;
      // the subscriber is better told now.
      if (!sub.isReady || stalled) {
        throw new BrokerUnavailableError(
          `broker unavailable: ${lastError ?? "not connected"}`,
        );
      }
      const k = roomKeys(room);
      const entry = { feed: undefined as unknown as RoomFeed };
      const early: Batch[] = [];
      const onMessage = (payload: Uint8Array) => {
        let batch: Batch;
        try {
          batch = decodeBatch(payload);
        } catch {
          return; // not ours; never crash on a foreign publisher
        }
        if (entry.feed) entry.feed.push(batch);
        else early.push(batch);
      };
      // The PUB/SUB connection has no reply timeout of its own: a stalled
      // Redis would hold this subscriber (and every later one of the room).
      try {
        await within(
          sub.subscribe(k.channel, onMessage as never, true),
          timeoutMs,
          () => new TimeoutReadError(timeoutMs),
        );
      } catch (e) {
        void sub.unsubscribe(k.channel, onMessage as never, true)
          .catch(() => {});
        throw unavailable(e);
      }
      let pos;
      try {
        pos = await position(room);
      } catch (e) {
        await sub.unsubscribe(k.channel, onMessage as never, true)
          .catch(() => {});
        throw e;
      }
      entry.feed = new RoomFeed(
        pos.epoch,
        pos.offset,
        deliver,
        (after, limit) => fill(room, after, limit, entry.feed.epoch),
      );
      feeds.set(room, entry);
      for (const b of early) entry.feed.push(b);
      let stopped = false;
      return {
        ...pos,
        stop() {
          if (stopped) return;
          stopped = true;
          entry.feed.close();
          // A follow() of the same room that began while this one was
          // starting may have taken its place.
          if (feeds.get(room) === entry) feeds.delete(room);
          // Only this feed's listener: a new follow() of the same room may
          // already have subscribed again.
          if (!closed) {
            void sub.unsubscribe(k.channel, onMessage as never, true)
              .catch(() => {});
          }
        },
      };
    },
    async command(args) {
      let reply;
      try {
        reply = await cmd.sendCommand(args);
      } catch (e) {
        throw unavailable(e);
      }
      answered();
      return reply;
    },
    // Read after every commit (health), so no spreads or arrays here.
    status() {
      let filled = 0;
      for (const f of feeds.values()) filled += f.feed.filled;
      const status: BrokerStatus = {
        state: current(),
        commits: counters.commits,
        failedCommits: counters.failed,
        lastCommitMs: counters.lastMs,
        totalCommitMs: counters.totalMs,
        rooms: feeds.size,
        filled,
      };
      return lastError && status.state === "down"
        ? { ...status, error: lastError }
        : status;
    },
    close() {
      if (closed) return;
      closed = true;
      clearTimeout(recheck);
      clearInterval(probeTimer);
      for (const { feed } of feeds.values()) feed.close();
      feeds.clear();
      cmd.destroy();
      sub.destroy();
    },
  };
  reported = current();
  hooks.changed = () => broker.onStateChange?.();
  return broker;
}

/** An id as appendRoom() escaped it; as it is if it is not one (older data). */
function unescapeId(id: string): string {
  try {
    return decodeURIComponent(id);
  } catch {
    return id;
  }
}
