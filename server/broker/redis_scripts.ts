/**
 * The broker's Lua scripts and key names: everything a core does to a room
 * in Redis that must be atomic across cores runs as one script.
 *
 * A room `R` has three keys, all with the hash tag `{R}` so that a Redis
 * Cluster (or a client-side shard map) keeps them on one node:
 *
 * - `chat:{R}:epoch`: the room's epoch, an opaque string.
 * - `chat:{R}:seq`: the room's last offset.
 * - `chat:{R}:log`: the room's history, a Redis Stream whose entry ids are
 *   `<offset>-0`, so a read "after offset K" is `XRANGE (K-0 +` and ids are
 *   the offsets everywhere.
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
}

/** Keys of room `room`. */
export function roomKeys(room: string): RoomKeys {
  const tag = `chat:{${room}}`;
  return {
    epoch: `${tag}:epoch`,
    seq: `${tag}:seq`,
    log: `${tag}:log`,
    channel: `${tag}:pub`,
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
 * Appends a packed batch to a room; returns `{epoch, first offset}`.
 *
 * KEYS: epoch, seq, log. ARGV: new epoch (used only if the room starts
 * afresh), ttl ms (0: none), maxlen, channel, time ms, message count, the
 * bodies packed as in the publication (each a 4-byte big-endian length and
 * its bytes: {@linkcode packBodies}), then the epoch and last offset the
 * core knows of the room ('' and 0 if none; see `rewound`). One argument
 * for the whole batch costs the client one bulk string instead of one per
 * message, and the script publishes the packed bodies as they came instead
 * of packing them again.
 */
export const APPEND_SCRIPT = ENSURE_ROOM + rewound(8) + `
local n = tonumber(ARGV[6])
local packed = ARGV[7]
local last = redis.call('INCRBY', KEYS[2], n)
local first = last - n + 1
local at = 1
for i = 1, n do
  local len = struct.unpack('>I4', packed, at)
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[3], (first + i - 1) .. '-0',
    'b', string.sub(packed, at + 4, at + 3 + len), 't', ARGV[5])
  at = at + 4 + len
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
redis.call('PUBLISH', ARGV[4], epoch .. '\\n' .. first .. '\\n' .. packed)
return {epoch, first}
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
