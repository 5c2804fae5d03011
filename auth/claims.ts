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
