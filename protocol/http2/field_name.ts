/**
 * What HTTP/2 allows as a regular field name (RFC 9113 §8.2.1): a token
 * (RFC 9110 §5.6.2) in lower case. One table for the server, which checks
 * every request's names, and the edge's client, which checks what it
 * forwards.
 *
 * @module
 */

/** 1 for the characters of a lowercase token, by char code. */
const LOWER_TOKEN = new Uint8Array(0x7f);
for (const c of "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz") {
  LOWER_TOKEN[c.charCodeAt(0)] = 1;
}

/** Whether char code `c` may stand in a lowercase token. */
export function isLowercaseTokenChar(c: number): boolean {
  return c < 0x7f && LOWER_TOKEN[c] === 1;
}

/** Whether `name` is a lowercase token (non-empty). */
export function isLowercaseToken(name: string): boolean {
  if (name.length === 0) return false;
  for (let i = 0; i < name.length; i++) {
    if (!isLowercaseTokenChar(name.charCodeAt(i))) return false;
  }
  return true;
}
