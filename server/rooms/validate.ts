/**
 * Request validation shared by every RPC.
 *
 * Limits on names keep one client from filling the room map with huge keys;
 * content size is bounded by the transport's max message size.
 */
import { ChatError } from "./errors.ts";

/** Longest user or room name accepted, in UTF-16 code units. */
export const MAX_NAME_LENGTH = 256;

/**
 * Whether a UTF-16 code unit can be one that `String.prototype.trim()`
 * removes (tab to CR, space, U+00A0, U+1680, U+2000–U+205F, U+3000,
 * U+FEFF). A superset of trim()'s set: it only decides when trim() is
 * needed at all.
 */
const maySpace = (c: number): boolean =>
  c <= 0x20 || c === 0xa0 || c === 0x1680 ||
  (c >= 0x2000 && c <= 0x205f) || c === 0x3000 || c === 0xfeff;

/**
 * Whether `s` is empty or whitespace only, as trim() counts whitespace.
 * It runs on every posted message: a visible first or last character (the
 * common case) decides it with two char reads and no allocation; only text
 * that starts and ends with a possible space is trimmed.
 */
export function isBlank(s: string): boolean {
  const n = s.length;
  if (n === 0) return true;
  if (!maySpace(s.charCodeAt(0)) || !maySpace(s.charCodeAt(n - 1))) {
    return false;
  }
  return s.trim() === "";
}

/** A room name alone (ListPresence): required, and as long as a name may be. */
export function validateRoom(room: string): void {
  requireName("room", room, "");
}

function requireName(
  field: "user" | "room",
  value: string,
  where: string,
): void {
  if (isBlank(value)) {
    throw new ChatError("invalid_argument", `${where}${field} is required`);
  }
  if (value.length > MAX_NAME_LENGTH) {
    throw new ChatError(
      "invalid_argument",
      `${where}${field} is longer than ${MAX_NAME_LENGTH} characters`,
    );
  }
}

/**
 * A message posted to a room: user, room and content are all required, and
 * blank (whitespace only) counts as missing for each of them.
 */
export function validatePost(
  post: { user: string; room: string; content: string },
  where = "",
): void {
  checkPost(post.user, post.room, !isBlank(post.content), where);
}

/**
 * validatePost() for a reader that only knows whether there is content
 * (`hasContent`: not blank, as {@linkcode isBlank} decides).
 */
export function validatePostHead(
  post: { user: string; room: string; hasContent: boolean },
  where = "",
): void {
  checkPost(post.user, post.room, post.hasContent, where);
}

function checkPost(
  user: string,
  room: string,
  hasContent: boolean,
  where: string,
): void {
  requireName("user", user, where);
  requireName("room", room, where);
  if (!hasContent) {
    throw new ChatError("invalid_argument", `${where}content is required`);
  }
}

/** Longest idempotency_key accepted (every RPC), in UTF-16 code units. */
export const MAX_IDEMPOTENCY_KEY_LENGTH = 128;

/** A post's idempotency key (SendMessage, Upload, Chat): optional, short. */
export function validateIdempotencyKey(key: string): void {
  if (key.length > MAX_IDEMPOTENCY_KEY_LENGTH) {
    throw new ChatError(
      "invalid_argument",
      `idempotency_key is longer than ${MAX_IDEMPOTENCY_KEY_LENGTH} characters`,
    );
  }
}

/** A subscription: user and room are required. */
export function validateSubscription(
  sub: { user: string; room: string },
): void {
  requireName("user", sub.user, "");
  requireName("room", sub.room, "");
}

/** Longest metrics interval accepted, in seconds (one hour). */
export const MAX_METRICS_INTERVAL_SECONDS = 3600;

/** Returns the metrics interval in ms; 0 means the default of 1 s. */
export function metricsIntervalMs(intervalSeconds: number): number {
  if (intervalSeconds < 0 || intervalSeconds > MAX_METRICS_INTERVAL_SECONDS) {
    throw new ChatError(
      "invalid_argument",
      `interval_seconds must be between 0 and ${MAX_METRICS_INTERVAL_SECONDS}, got ${intervalSeconds}`,
    );
  }
  return (intervalSeconds || 1) * 1000;
}

/**
 * StreamMetrics' `instance_id`, which labels every row it sends back: as
 * long as a name may be, so that a stream cannot be made to repeat a huge
 * label every second.
 */
export function checkInstanceId(instanceId: string): void {
  if (instanceId.length > MAX_NAME_LENGTH) {
    throw new ChatError(
      "invalid_argument",
      `instance_id is longer than ${MAX_NAME_LENGTH} characters`,
    );
  }
}
