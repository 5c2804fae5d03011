/**
 * Room patterns of a token's `rooms` claim: exact names, or `prefix*` for
 * every room starting with `prefix` (`*` alone is every room).
 *
 * Only a trailing `*` is special, as in Centrifugo's channel namespaces and
 * NATS's `>`: a star elsewhere is rejected, so that a pattern never means
 * something its issuer did not intend.
 *
 * @example
 * ```ts
 * const allowed = compileRoomPatterns(["lobby", "team-*"]);
 * allowed("team-a"); // true
 * allowed("lobby2"); // false
 * ```
 *
 * @module
 */

/** True when a room is inside the patterns. */
export type RoomMatcher = (room: string) => boolean;

/** Compiles patterns; throws a RangeError naming a malformed one. */
export function compileRoomPatterns(patterns: readonly string[]): RoomMatcher {
  const exact = new Set<string>();
  const prefixes: string[] = [];
  for (const pattern of patterns) {
    const star = pattern.indexOf("*");
    if (star === -1) {
      if (pattern === "") throw new RangeError("empty room pattern");
      exact.add(pattern);
    } else if (star === pattern.length - 1) {
      prefixes.push(pattern.slice(0, -1));
    } else {
      throw new RangeError(
        `room pattern "${pattern}" has a "*" that is not at its end`,
      );
    }
  }
  if (prefixes.includes("")) return () => true;
  if (prefixes.length === 0) return (room) => exact.has(room);
  return (room) => {
    if (exact.has(room)) return true;
    for (const prefix of prefixes) {
      if (room.startsWith(prefix)) return true;
    }
    return false;
  };
}
