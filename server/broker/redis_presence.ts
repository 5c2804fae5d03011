/**
 * Presence shared by every core on one Redis (`--presence` with
 * `--broker`): who is in a room, over all cores, and cleaned up when a core
 * dies.
 *
 * Each core writes only its own entries: in `chat:{R}:who` (a hash) the
 * field `<core id>\n<user>` holds that core's subscription count of the
 * user, and in `chat:{R}:alive` (a sorted set) the same member has the time
 * it expires. A core renews its members every `heartbeatMs`; a core that
 * died stops renewing, and its entries are swept `expiryMs` later by the
 * first core that lists or heartbeats the room, however much later (the
 * room's keys outlive their last renewal by `keysTtlMs`, a day), in one Lua
 * script, so exactly one core sweeps each entry. The sweeping core reports users that no core
 * has any more (`onGone`), which the server announces as LEAVE. A core
 * sweeps only after Redis answered its heartbeats promptly for `expiryMs`,
 * so a Redis that stalled or restarted does not make live users LEAVE.
 *
 * Expiry times are Redis's clock (`TIME` in the scripts), never a core's:
 * cores whose clocks disagree by more than the expiry would otherwise see
 * each other's entries as expired (a core behind) or sweep every other
 * core's (a core ahead), and announce live users as gone.
 *
 * The core id is random per process start, so a restarted core never
 * inherits a dead one's entries.
 *
 * @module
 */
import {
  LocalPresence,
  type Presence,
  type PresenceEntry,
} from "../rooms/presence.ts";

/** Redis's time in ms (a script may read the clock since Redis 5). */
const REDIS_NOW = `
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
`;

/**
 * Sweeps members expired by Redis's clock unless `ARGV[1]` is `0`; returns
 * `{gone members, live hash flattened}`.
 */
const SWEEP_SCRIPT = `${REDIS_NOW}
local gone = {}
if ARGV[1] == '1' then
  local cut = string.format('%.0f', now)
  gone = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', cut)
  if #gone > 0 then
    redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', cut)
    -- unpack() takes at most about 8,000 values (Lua's C stack).
    for i = 1, #gone, 1000 do
      redis.call('HDEL', KEYS[2], unpack(gone, i, math.min(i + 999, #gone)))
    end
  end
end
return {gone, redis.call('HGETALL', KEYS[2])}
`;

/**
 * Sets this core's members of one room: `ARGV[1]` the expiry in ms,
 * `ARGV[2]` how long the room's keys last after it, then member and count
 * pairs. Each member expires `ARGV[1]` after Redis's now; a count of 0
 * removes the member (a room whose members all left has no keys).
 */
const RENEW_SCRIPT = `${REDIS_NOW}
local expires = string.format('%.0f', now + tonumber(ARGV[1]))
for i = 3, #ARGV, 2 do
  if ARGV[i + 1] == '0' then
    redis.call('HDEL', KEYS[1], ARGV[i])
    redis.call('ZREM', KEYS[2], ARGV[i])
  else
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
    redis.call('ZADD', KEYS[2], expires, ARGV[i])
  end
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return 1
`;

/** What presence needs of Redis: one command at a time. */
export interface RedisCommands {
  command(args: string[]): Promise<unknown>;
}

/** Options of {@linkcode createRedisPresence}. */
export interface RedisPresenceOptions {
  /** How often this core renews its entries; default 1000 ms. */
  heartbeatMs?: number;
  /** An entry not renewed for this long is gone; default 3000 ms. */
  expiryMs?: number;
  /**
   * How long a room's keys outlive their last renewal (default
   * {@linkcode PRESENCE_KEYS_TTL_MS}, at least twice the expiry): a dead
   * core's entries wait that long for a core that renews or lists the room
   * to sweep them and announce their users' LEAVE. Keys of a room that
   * everyone left are deleted at once.
   */
  keysTtlMs?: number;
  /** A user whom no core has in `room` any more, found by a sweep. */
  onGone?: (room: string, user: string) => void;
  /** Errors of background writes (the broker being down): counted, not thrown. */
  onError?: (err: unknown) => void;
  /**
   * This core's clock, for timing heartbeats (expiry times are Redis's);
   * default `performance.now()`.
   */
  now?: () => number;
}

/**
 * Default of {@linkcode RedisPresenceOptions.keysTtlMs}: as long as an
 * unused room's epoch lives (redis_broker.ts), so that a JOIN still in a
 * room's history gets its LEAVE from the next core in the room.
 */
export const PRESENCE_KEYS_TTL_MS = 24 * 3600_000;

const keys = (room: string) => ({
  who: `chat:{${room}}:who`,
  alive: `chat:{${room}}:alive`,
});

const utf8 = new TextDecoder("utf-8", { ignoreBOM: true });
const text = (v: unknown) =>
  typeof v === "string" ? v : utf8.decode(v as Uint8Array);

/** Presence over Redis; `redis` is the broker's command connection. */
export function createRedisPresence(
  redis: RedisCommands,
  options: RedisPresenceOptions = {},
): Presence {
  const heartbeatMs = options.heartbeatMs ?? 1000;
  const expiryMs = options.expiryMs ?? 3000;
  const keysTtl = String(
    Math.max(2 * expiryMs, options.keysTtlMs ?? PRESENCE_KEYS_TTL_MS),
  );
  // Only intervals are timed: a monotonic clock, which does not jump.
  const now = options.now ?? (() => performance.now());
  const coreId = crypto.randomUUID();
  const local = new LocalPresence();
  const onError = options.onError ?? (() => {});
  let writes = Promise.resolve();
  // Another core's entries may be swept only once Redis has answered this
  // core's heartbeats promptly for a whole expiry: after Redis stalled or
  // was down, every core's entries look expired to whichever core renews
  // first, and the others need a heartbeat or two (and a reconnect) to
  // renew theirs. Until then, lists show the entries as they are.
  let steadySince = now();
  const steady = () => now() - steadySince >= expiryMs;
  /** Notes how a heartbeat that started at `started` went. */
  function answered(started: number, ok: boolean): void {
    const t = now();
    if (!ok) steadySince = Infinity;
    // Also after this core's clock went back past `steadySince` (or it was
    // Infinity): it would not be steady again until the clock caught up.
    else if (t < steadySince || t - started > heartbeatMs) steadySince = t;
  }

  const member = (user: string) => `${coreId}\n${user}`;
  /**
   * The command that sets `users` in `room` to their `counts` (a user not
   * in them to 0, removed).
   */
  const setMembers = (
    room: string,
    users: Iterable<string>,
    counts: ReadonlyMap<string, number> | undefined,
  ): string[] => {
    const k = keys(room);
    const command = [
      "EVAL",
      RENEW_SCRIPT,
      "2",
      k.who,
      k.alive,
      String(expiryMs),
      keysTtl,
    ];
    for (const u of users) command.push(member(u), String(counts?.get(u) ?? 0));
    return command;
  };

  /** Users whose count changed since the last write, by room. */
  let changed = new Map<string, Set<string>>();
  let writeQueued = false;
  /**
   * Notes that `user`'s count in `room` changed. Changes are written
   * together, one script per room, by one write queued behind what is in
   * flight: a burst of joins (a reconnect storm) is a few round trips, not
   * one per join, so the first entries do not expire while the last wait
   * (another core would sweep them and announce live users gone).
   */
  function write(room: string, user: string): void {
    let users = changed.get(room);
    if (users === undefined) changed.set(room, users = new Set());
    users.add(user);
    if (writeQueued) return;
    writeQueued = true;
    writes = writes.then(() => {
      writeQueued = false;
      const batch = changed;
      changed = new Map();
      return Promise.all(
        [...batch].map(([room, users]) =>
          redis.command(setMembers(room, users, local.rooms.get(room)))
        ),
      );
    }).then(() => {}, (err) => {
      steadySince = Infinity;
      onError(err);
    });
  }

  async function sweep(room: string): Promise<Map<string, number>> {
    const k = keys(room);
    const [gone, flat] = await redis.command([
      "EVAL",
      SWEEP_SCRIPT,
      "2",
      k.alive,
      k.who,
      steady() ? "1" : "0",
    ]) as [unknown[], unknown[]];
    const counts = new Map<string, number>();
    for (let i = 0; i + 1 < flat.length; i += 2) {
      const field = text(flat[i]);
      const user = field.slice(field.indexOf("\n") + 1);
      counts.set(user, (counts.get(user) ?? 0) + Number(text(flat[i + 1])));
    }
    for (const g of gone) {
      const field = text(g);
      const user = field.slice(field.indexOf("\n") + 1);
      if (!counts.has(user)) options.onGone?.(room, user);
    }
    return counts;
  }

  /** Renews every entry of this core, re-creating any that Redis lost. */
  function renew(): Promise<unknown> {
    // A core with nobody in any room still times Redis, for its lists.
    if (local.rooms.size === 0) return redis.command(["PING"]);
    // Expiry times are Redis's now when the script runs, not when the timer
    // fired: ones queued behind a stalled Redis would land expired.
    return Promise.all(
      [...local.rooms].map(([room, counts]) =>
        redis.command(setMembers(room, counts.keys(), counts))
      ),
    );
  }

  // One heartbeat at a time: while Redis does not answer, ticks are
  // skipped rather than queued behind it.
  let beating = false;
  const timer = setInterval(() => {
    if (beating) return;
    beating = true;
    const started = now();
    writes = writes.then(async () => {
      try {
        await renew();
        answered(started, true);
        if (!steady()) return;
        await Promise.all([...local.rooms.keys()].map(sweep));
      } catch (err) {
        answered(started, false);
        onError(err);
      }
    }).finally(() => beating = false);
  }, heartbeatMs);

  return {
    join(room, user) {
      local.join(room, user);
      write(room, user);
    },
    leave(room, user) {
      local.leave(room, user);
      write(room, user);
    },
    async list(room): Promise<PresenceEntry[]> {
      await writes;
      const counts = await sweep(room);
      return [...counts].map(([user, connections]) => ({ user, connections }))
        .sort((a, b) => a.user < b.user ? -1 : 1);
    },
    async close() {
      clearInterval(timer);
      await writes;
      // Leave at once rather than after the expiry: counts of 0.
      const present = [...local.rooms].map(([room, users]) =>
        [room, [...users.keys()]] as const
      );
      await local.close();
      for (const [room, users] of present) {
        for (const user of users) write(room, user);
      }
      await writes;
    },
  };
}
