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

/**
 * What shows as nothing in a name: control and format characters (a NUL, a
 * zero-width space, a soft hyphen), the other default-ignorable ones, and
 * combining marks (an accent does not make `Server` another name).
 */
const UNSEEN = /[\p{Cc}\p{Cf}\p{Default_Ignorable_Code_Point}\p{M}]/gu;

/**
 * Letters of other scripts that look like the Latin ones of `system` and
 * `server` (from Unicode's confusables.txt), as toLowerCase() leaves them.
 */
const LOOKALIKES: Readonly<Record<string, string>> = {
  "\u0455": "s", // Cyrillic dze
  "\ua731": "s", // Latin letter small capital s
  "\u0443": "y", // Cyrillic u
  "\u04af": "y", // Cyrillic straight u
  "\u03b3": "y", // Greek gamma
  "\u03c5": "y", // Greek upsilon (Y upper-case)
  "\u028f": "y", // Latin letter small capital y
  "\u0442": "t", // Cyrillic te
  "\u03c4": "t", // Greek tau
  "\u0435": "e", // Cyrillic ie
  "\u0454": "e", // Cyrillic Ukrainian ie
  "\u04bd": "e", // Cyrillic abkhasian che
  "\u03b5": "e", // Greek epsilon
  "\u043c": "m", // Cyrillic em
  "\u03bc": "m", // Greek mu (M upper-case)
  "\u03fb": "m", // Greek san
  "\u0433": "r", // Cyrillic ghe
  "\u0280": "r", // Latin letter small capital r
  "\u1d26": "r", // Greek letter small capital gamma
  "\u03bd": "v", // Greek nu
  "\u0475": "v", // Cyrillic izhitsa
  "\u1d20": "v", // Latin letter small capital v
};
const LOOKALIKE = new RegExp(`[${Object.keys(LOOKALIKES).join("")}]`, "gu");

/** Printable ASCII only: a name that cannot hide or fake a letter. */
const PLAIN = /^[\x20-\x7e]*$/;

/**
 * True when `user` is one of {@linkcode SERVER_USERS}, in any case, or
 * would show as one: with invisible characters or combining marks in it,
 * in another form of the letters (fullwidth, mathematical: NFKD), or with
 * letters of another script that look the same (Cyrillic `Ѕystem`).
 * Run once per token, not per call.
 */
export function isServerUser(user: string): boolean {
  const plain = user.trim().toLowerCase();
  if (SERVER_USERS.has(plain)) return true;
  if (PLAIN.test(plain)) return false;
  const shown = user.normalize("NFKD").replace(UNSEEN, "").trim()
    .toLowerCase().replace(LOOKALIKE, (c) => LOOKALIKES[c]);
  return SERVER_USERS.has(shown);
}
