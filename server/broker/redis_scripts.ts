/**
 * The broker's Lua scripts and key names: everything a core does to a room
 * in Redis that must be atomic across cores runs as one script.
 *
 * A room `R` has these keys, all with the hash tag `{R}` so that a Redis
 * Cluster (or a client-side shard map) keeps them on one node:
 *
 * - `chat:{R}:epoch`: the room's epoch, an opaque string.
 * - `chat:{R}:seq`: the room's last offset.
 * - `chat:{R}:log`: the room's history, a Redis Stream whose entry ids are
 *   `<offset>-0`, so a read "after offset K" is `XRANGE (K-0 +` and ids are
 *   the offsets everywhere.
 * - `chat:{R}:keys` and `chat:{R}:keytimes`: the idempotency scopes of keyed
 *   SendMessage calls within their window (a hash of `offset id time epoch`,
 *   and a sorted set by time for expiry); see APPEND_SCRIPT.
 *
 * and one PUB/SUB channel, `chat:{R}:pub`, on which each append publishes
 * its whole batch once: `epoch \n first-offset \n` then each body as a
 * 4-byte big-endian length and its bytes.
 *
 * A room whose epoch or offset counter is missing (never used, expired after
 * the TTL, or lost in a Redis restart without persistence) starts afresh:
 * a new epoch, offsets from 1, and its old stream deleted, all in the same
 * script, so every core sees the same new epoch.
 *
 * @module
 */

/** The Redis keys and channel of one room. */
export interface RoomKeys {
  readonly epoch: string;
  readonly seq: string;
  readonly log: string;
  readonly channel: string;
  /** Idempotency scopes of the window: scope → "offset id time epoch". */
  readonly keys: string;
  /** The same scopes by their message's time, for expiry. */
  readonly keyTimes: string;
}

/** Keys of room `room`. */
export function roomKeys(room: string): RoomKeys {
  const tag = `chat:{${room}}`;
  return {
    epoch: `${tag}:epoch`,
    seq: `${tag}:seq`,
    log: `${tag}:log`,
    channel: `${tag}:pub`,
    keys: `${tag}:keys`,
    keyTimes: `${tag}:keytimes`,
  };
}

/** The channel's room name, or undefined for a channel not of ours. */
export function roomOfChannel(channel: string): string | undefined {
  if (!channel.startsWith("chat:{") || !channel.endsWith("}:pub")) {
    return undefined;
  }
  return channel.slice(6, -5);
}

// Shared by both scripts: make sure the room has an epoch and a counter.
const ENSURE_ROOM = `
local epoch = redis.call('GET', KEYS[1])
if (not epoch) or redis.call('EXISTS', KEYS[2]) == 0 then
  epoch = ARGV[1]
  redis.call('SET', KEYS[1], epoch)
  redis.call('SET', KEYS[2], 0)
  redis.call('DEL', KEYS[3])
end
`;

/**
 * A Redis that came back with part of its data (an RDB snapshot older than
 * its last writes, a lagging replica promoted) has the room's epoch, counter
 * and stream as they were some writes ago: the same epoch, an older last
 * offset. Offsets past it would be handed out again, and every core that
 * delivered the lost ones would skip the new messages as repeats. The
 * caller's last known offset of the epoch (its feed's: never past the
 * counter unless Redis went back) moves the counter forward again, keeping
 * its TTL; the lost messages leave a gap in the offsets.
 */
const rewound = (epochArg: number) => `
if ARGV[${epochArg}] ~= '' and epoch == ARGV[${epochArg}] then
  local known = tonumber(ARGV[${epochArg + 1}])
  if tonumber(redis.call('GET', KEYS[2])) < known then
    redis.call('SET', KEYS[2], known, 'KEEPTTL')
  end
end
`;

const EXPIRE_ROOM = `
local ttl = tonumber(ARGV[2])
if ttl > 0 then
  redis.call('PEXPIRE', KEYS[1], ttl)
  redis.call('PEXPIRE', KEYS[2], ttl)
  redis.call('PEXPIRE', KEYS[3], ttl)
end
`;

/**
 * Appends a packed batch to a room; returns `{epoch, first offset, ...}`
 * with, after them, one string per message: "" for one stored, or the
 * `offset id time epoch` of the message that stored its idempotency scope
 * first.
 *
 * KEYS: epoch, seq, log, keys, key times. ARGV: new epoch (used only if the
 * room starts afresh), ttl ms (0: none), maxlen, channel, time ms, message
 * count, the bodies packed as in the publication (each a 4-byte big-endian
 * length and its bytes: {@linkcode packBodies}), the epoch and last offset
 * the core knows of the room ('' and 0 if none; see `rewound`), the
 * idempotency window in ms, the most scopes the room keeps, then per message
 * its `id time scope` ('' for none; the time is the message's, given back to
 * a repeat).
 * One argument for the whole batch costs the client one bulk string instead
 * of one per message, and the script publishes the packed bodies as they
 * came instead of packing them again (unless a repeat is left out).
 *
 * A message whose scope the room stored within the window is not stored
 * (nor published): the check and the append are one script, so two cores
 * given the same key at once store it once; a scope twice in one batch is
 * stored once, the later ones answered as repeats of the first. Scopes
 * count only within their window and in the epoch they were stored in;
 * they leave with their window (at each append, up to 1000 more of the
 * oldest than the batch has messages are dropped, so they cannot pile up,
 * and both keys expire a window after the last keyed message). A room keeps
 * at most `cap` scopes: past it the oldest go first, as in a core's own
 * index (rooms/idempotency.ts), so a client posting keys as fast as it can
 * holds a bounded number, not its rate times the window.
 */
export const APPEND_SCRIPT = ENSURE_ROOM + rewound(8) + `
local n = tonumber(ARGV[6])
local packed = ARGV[7]
local window = tonumber(ARGV[10])
local cap = tonumber(ARGV[11])
local now = tonumber(ARGV[5])
if window > 0 then
  -- More than the batch can add: a busy room's scopes cannot pile up.
  local old = redis.call('ZRANGEBYSCORE', KEYS[5], '-inf', now - window,
    'LIMIT', 0, 1000 + n)
  for i = 1, #old do
    redis.call('HDEL', KEYS[4], old[i])
    redis.call('ZREM', KEYS[5], old[i])
  end
end
local repeats = {}
local scopes = {}
-- A scope twice in the batch (an index that dropped a pending key for its
-- bound): the later ones repeat the first, once it has its offset.
local firstOf = {}
local sameAs = {}
local kept = n
for i = 1, n do
  repeats[i] = ''
  local key = ARGV[11 + i]
  if key ~= '' and window > 0 then
    local space = string.find(key, ' ', 1, true)
    local scope = string.sub(key, string.find(key, ' ', space + 1, true) + 1)
    scopes[i] = scope
    local was = redis.call('HGET', KEYS[4], scope)
    local wasTime, wasEpoch
    if was then wasTime, wasEpoch = string.match(was, ' (%S+) (%S+)$') end
    -- Only in this epoch (a room that started again lost that message),
    -- and within the window (the trim above drops a bounded number).
    if was and wasEpoch == epoch and tonumber(wasTime) > now - window then
      repeats[i] = was
      kept = kept - 1
    elseif firstOf[scope] then
      sameAs[i] = firstOf[scope]
      kept = kept - 1
    else
      firstOf[scope] = i
    end
  end
end
local first = 0
local out = packed
if kept > 0 then
  local last = redis.call('INCRBY', KEYS[2], kept)
  first = last - kept + 1
  local at = 1
  local offset = first
  local parts = {}
  local stored = {}
  local keyed = false
  for i = 1, n do
    local len = struct.unpack('>I4', packed, at)
    if repeats[i] == '' and not sameAs[i] then
      local body = string.sub(packed, at + 4, at + 3 + len)
      redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[3], offset .. '-0',
        'b', body, 't', ARGV[5])
      local scope = scopes[i]
      if scope then
        -- 'id time' as the argument has them, then the epoch.
        local key = ARGV[11 + i]
        stored[i] = offset .. ' ' ..
          string.sub(key, 1, #key - #scope - 1) .. ' ' .. epoch
        redis.call('HSET', KEYS[4], scope, stored[i])
        redis.call('ZADD', KEYS[5], now, scope)
        keyed = true
      end
      if kept < n then parts[#parts + 1] = string.sub(packed, at, at + 3 + len) end
      offset = offset + 1
    end
    at = at + 4 + len
  end
  if kept < n then out = table.concat(parts) end
  for i, j in pairs(sameAs) do repeats[i] = stored[j] end
  if keyed then
    local over = redis.call('ZCARD', KEYS[5]) - cap
    if over > 0 then
      -- member, score, member, score, ...: the oldest first.
      local gone = redis.call('ZPOPMIN', KEYS[5], over)
      for j = 1, #gone, 2 do redis.call('HDEL', KEYS[4], gone[j]) end
    end
    redis.call('PEXPIRE', KEYS[4], window)
    redis.call('PEXPIRE', KEYS[5], window)
  end
end
` + EXPIRE_ROOM + `
if ttl == 0 and redis.call('PTTL', KEYS[2]) >= 0 then
  -- Created by a subscription, which bounds an unused room's life, or
  -- by a core with a history TTL: a room with messages is kept as long as
  -- there is no history TTL, all three keys alike.
  redis.call('PERSIST', KEYS[1])
  redis.call('PERSIST', KEYS[2])
  redis.call('PERSIST', KEYS[3])
end
if kept > 0 then
  redis.call('PUBLISH', ARGV[4], epoch .. '\\n' .. first .. '\\n' .. out)
end
local reply = {epoch, first}
for i = 1, n do reply[2 + i] = repeats[i] end
return reply
`;

/**
 * The bodies of a batch as the append script takes them and PUB/SUB
 * carries them: each a 4-byte big-endian length and its bytes.
 */
export function packBodies(bodies: readonly Uint8Array[]): Uint8Array {
  let size = 0;
  for (const b of bodies) size += 4 + b.byteLength;
  const out = new Uint8Array(size);
  const view = new DataView(out.buffer);
  let at = 0;
  for (const b of bodies) {
    view.setUint32(at, b.byteLength);
    out.set(b, at + 4);
    at += 4 + b.byteLength;
  }
  return out;
}

/**
 * A room's epoch and last offset, creating them for a room not in Redis.
 *
 * KEYS: epoch, seq, log. ARGV: new epoch, ttl ms for a room created here
 * (bounded even with no history TTL, so subscribing to random names cannot
 * fill Redis), then the epoch and last offset the core knows of the room
 * ('' and 0 if none; see `rewound`).
 */
export const POSITION_SCRIPT = `
local created = (not redis.call('GET', KEYS[1])) or
  redis.call('EXISTS', KEYS[2]) == 0
` + ENSURE_ROOM + rewound(3) + `
if created then ` + EXPIRE_ROOM + ` end
return {epoch, tonumber(redis.call('GET', KEYS[2]))}
`;

/** 2026-01-01T00:00:00Z in seconds: the zero of the id blocks' clock. */
export const ID_CLOCK_ZERO_S = 1_767_225_600;

/**
 * The next block of message ids for a core, never one handed out before,
 * even by a Redis that lost its data (restarted without persistence,
 * flushed): the counter goes on from at least the tenths of a second since
 * `ID_CLOCK_ZERO_S` (Redis's clock or the core's, whichever is later), so a
 * counter that starts over starts past every block taken before, as long as
 * blocks were taken at under ten a second on average. It also starts past
 * every id of the 10^9-id blocks of earlier versions.
 *
 * KEYS: the block counter, the earlier versions' counter. ARGV: the core's
 * clock in tenths of a second since the zero, the earlier block size over
 * this one.
 */
export const ID_BLOCK_SCRIPT = `
local now = redis.call('TIME')
local floor = math.max(tonumber(ARGV[1]),
  (tonumber(now[1]) - ` + ID_CLOCK_ZERO_S + `) * 10 +
    math.floor(tonumber(now[2]) / 100000))
local old = tonumber(redis.call('GET', KEYS[2]) or '0')
floor = math.max(floor, math.ceil(old * tonumber(ARGV[2])))
local n = redis.call('INCR', KEYS[1])
if n < floor then
  redis.call('SET', KEYS[1], floor)
  n = floor
end
return n
`;
