/**
 * What a verified token allows: who the caller is, which rooms, which verbs.
 *
 * Claims (after the signature, `exp`, `nbf`, `iss` and `aud` were checked;
 * their names are in auth/claims.ts, shared with the signer):
 * - `sub`: the user; required.
 * - `rooms` (optional): a list of room names or `prefix*` patterns; absent
 *   means every room.
 * - `scope` (optional): space-separated `publish` and/or `subscribe`; absent
 *   means both. Other words are ignored (a token may carry scopes of other
 *   services).
 *
 * Plain TypeScript: the transport maps its ChatErrors to gRPC statuses.
 *
 * @module
 */
import {
  isServerUser,
  ROOMS_CLAIM,
  SCOPE_CLAIM,
  USER_CLAIM,
  type Verb,
} from "../../auth/claims.ts";
import { ChatError } from "../rooms/errors.ts";
import { MAX_NAME_LENGTH } from "../rooms/validate.ts";
import { compileRoomPatterns, type RoomMatcher } from "./room_patterns.ts";

/** A caller's permissions, from one token. */
export interface Grant {
  /** The token's `sub`. */
  readonly user: string;
  /** Rooms the token is limited to; undefined means any room. */
  readonly rooms?: RoomMatcher;
  readonly publish: boolean;
  readonly subscribe: boolean;
  /** When the token expires (ms since the epoch); undefined: never. */
  readonly expiresAtMs?: number;
}

export type { Verb };

/** Builds a grant from verified claims; malformed claims are UNAUTHENTICATED. */
export function grantFromClaims(
  claims: Readonly<Record<string, unknown>>,
): Grant {
  const sub = claims[USER_CLAIM];
  const rooms = claims[ROOMS_CLAIM];
  const scope = claims[SCOPE_CLAIM];
  const exp = claims.exp;
  if (typeof sub !== "string" || sub.trim() === "") {
    throw invalidClaim("the token has no sub (user) claim");
  }
  if (sub.length > MAX_NAME_LENGTH) {
    throw invalidClaim(
      `the token's sub (user) claim is longer than ${MAX_NAME_LENGTH} characters`,
    );
  }
  if (isServerUser(sub)) {
    throw new ChatError(
      "permission_denied",
      `user "${sub}" is reserved for the server's own lines`,
    );
  }
  let matcher: RoomMatcher | undefined;
  if (rooms !== undefined) {
    if (!Array.isArray(rooms) || rooms.some((r) => typeof r !== "string")) {
      throw invalidClaim("the token's rooms claim is not a list of strings");
    }
    try {
      matcher = compileRoomPatterns(rooms as string[]);
    } catch (err) {
      throw invalidClaim(`the token's rooms claim: ${(err as Error).message}`);
    }
  }
  let publish = true;
  let subscribe = true;
  if (scope !== undefined) {
    if (typeof scope !== "string") {
      throw invalidClaim("the token's scope claim is not a string");
    }
    const words = new Set(scope.split(" "));
    publish = words.has("publish");
    subscribe = words.has("subscribe");
  }
  return Object.freeze({
    user: sub,
    rooms: matcher,
    publish,
    subscribe,
    expiresAtMs: typeof exp === "number" ? exp * 1000 : undefined,
  });
}

/**
 * The user a request acts as: an empty `user` is the token's; another
 * user's name is PERMISSION_DENIED.
 */
export function actingUser(grant: Grant, user: string): string {
  if (user !== "" && user !== grant.user) {
    throw new ChatError(
      "permission_denied",
      `the token is for user "${grant.user}", not "${user}"`,
    );
  }
  return grant.user;
}

/** Throws PERMISSION_DENIED for a verb or room outside the token. */
export function checkAccess(grant: Grant, verb: Verb, room: string): void {
  if (!grant[verb]) {
    throw new ChatError(
      "permission_denied",
      `the token's scope does not allow ${verb}`,
    );
  }
  if (grant.rooms !== undefined && !grant.rooms(room)) {
    throw new ChatError(
      "permission_denied",
      `the token does not allow room "${room}"`,
    );
  }
}

function invalidClaim(message: string): ChatError {
  return new ChatError("unauthenticated", message);
}
