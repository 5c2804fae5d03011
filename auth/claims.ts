/**
 * The claims of a chat token, named once for the two sides that must agree
 * on them: the signer (auth/dev_token.ts, `deno task token`, the edge's
 * development tokens) and the core that reads them (server/auth/grant.ts).
 *
 * Plain TypeScript with no imports, so the edge (which must run alone on
 * Deno Deploy) and the core can both use it.
 *
 * @module
 */

/** The user the token speaks for (the standard JWT subject). */
export const USER_CLAIM = "sub";

/** Optional list of room names or `prefix*` patterns; absent: every room. */
export const ROOMS_CLAIM = "rooms";

/** Optional space-separated verbs ({@linkcode Verb}); absent: all of them. */
export const SCOPE_CLAIM = "scope";

/** What a token's scope may allow. */
export type Verb = "publish" | "subscribe";

/**
 * Names the server speaks as (server/grpc/messages.ts: the welcome is from
 * "System", Chat's echoes and alive lines from "Server"), in lower case. A
 * token for one of them would let its holder's lines pass for the server's,
 * so the core refuses it and nothing here signs one.
 */
export const SERVER_USERS: ReadonlySet<string> = new Set(["system", "server"]);

/** True when `user` is one of {@linkcode SERVER_USERS}, in any case. */
export function isServerUser(user: string): boolean {
  return SERVER_USERS.has(user.trim().toLowerCase());
}
