/**
 * A decimal counter kept as text.
 *
 * Why not `` `msg_${n}` ``: V8 converts a number to a string through its
 * number-to-string cache, an old-generation table that then points at the
 * new string. A counter that is new on every call writes a new young
 * string into that table each time; each scavenge then has thousands of
 * old-to-new slots to visit and strings to keep. Under unary load that took
 * scavenges from ~0.25 to ~1 ms, which is most of the p99
 * (docs/perf-log.md, "stop 20"). Incrementing the digits as text makes
 * strings the cache never sees.
 *
 * @module
 */

const NINE = 57;

/** `digits` (a non-negative integer in decimal) plus one, as text. */
export function nextDecimal(digits: string): string {
  let i = digits.length - 1;
  while (i >= 0 && digits.charCodeAt(i) === NINE) i--;
  const zeros = "0".repeat(digits.length - 1 - i);
  if (i < 0) return "1" + zeros;
  return digits.slice(0, i) +
    String.fromCharCode(digits.charCodeAt(i) + 1) + zeros;
}
