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

const EXPIRE_ROOM = `
local ttl = tonumber(ARGV[2])
if ttl > 0 then
  redis.call('PEXPIRE', KEYS[1], ttl)
  redis.call('PEXPIRE', KEYS[2], ttl)
  redis.call('PEXPIRE', KEYS[3], ttl)
end
`;

/**
 * Appends ARGV[6..] to a room; returns `{epoch, first offset}`.
 *
 * KEYS: epoch, seq, log. ARGV: new epoch (used only if the room starts
 * afresh), ttl ms (0: none), maxlen, channel, time ms, bodies...
 */
export const APPEND_SCRIPT = ENSURE_ROOM + `
local n = #ARGV - 5
local last = redis.call('INCRBY', KEYS[2], n)
local first = last - n + 1
local parts = {epoch, '\\n', tostring(first), '\\n'}
for i = 1, n do
  local body = ARGV[5 + i]
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[3], (first + i - 1) .. '-0',
    'b', body, 't', ARGV[5])
  parts[#parts + 1] = struct.pack('>I4', #body)
  parts[#parts + 1] = body
end
` + EXPIRE_ROOM + `
redis.call('PUBLISH', ARGV[4], table.concat(parts))
return {epoch, first}
`;

/**
 * A room's epoch and last offset, creating them for a room not in Redis.
 *
 * KEYS: epoch, seq, log. ARGV: new epoch, ttl ms for a room created here
 * (bounded even with no history TTL, so subscribing to random names cannot
 * fill Redis).
 */
export const POSITION_SCRIPT = `
local created = (not redis.call('GET', KEYS[1])) or
  redis.call('EXISTS', KEYS[2]) == 0
` + ENSURE_ROOM + `
if created then ` + EXPIRE_ROOM + ` end
return {epoch, tonumber(redis.call('GET', KEYS[2]))}
`;
