/**
 * From an `authorization` header to a {@linkcode Grant}, with a cache of
 * verified tokens.
 *
 * Why a cache: a client sends the same token on every call, and verifying it
 * costs far more than serving a unary call (measured with jose 6 on the dev
 * machine: HS256 ~55 µs, ES256 ~1.4 ms, a cache hit ~0.2 µs; docs/auth.md).
 * A cached grant is used only until its token's `exp` (plus the leeway), and
 * the cache holds at most `maxEntries` tokens, dropping the oldest first, so
 * a client minting tokens cannot grow it.
 *
 * Failures are remembered too (up to `maxEntries`), except "not yet valid",
 * which changes with time: a client retrying with an expired or forged
 * token in a loop then costs a map lookup per call, not a signature check
 * (ES256 is ~1.4 ms). A stream of always-new bad tokens still costs one
 * check each (docs/auth.md). Anyone can make refused tokens, as long as a
 * header allows (64 KiB), so that memory is bounded by their total length
 * too (`maxRefusedChars`), not only by their number.
 *
 * Calls that bring the same uncached token at once share one verification
 * (one promise), so a client opening ten streams with a fresh token pays
 * for one check. Distinct tokens being verified at once are capped
 * (`maxVerifying`, per process): past it a call fails UNAVAILABLE at once
 * instead of queueing another signature check behind the others, so a
 * flood of always-new tokens costs bounded memory and a bounded backlog.
 * The cap is per process, not per connection, because behind the edge
 * every user shares a few connections.
 *
 * @module
 */
import { ChatError } from "../rooms/errors.ts";
import { type Grant, grantFromClaims } from "./grant.ts";
import { TokenRejected, type TokenVerifier } from "./token_verifier.ts";

/** Options of {@linkcode createAuthenticator}. */
export interface AuthenticatorOptions {
  verify: TokenVerifier;
  /** Seconds a token stays usable after its `exp`. */
  leewaySeconds: number;
  /** Tokens remembered; default 10 000. */
  maxEntries?: number;
  /** Total length of the refused tokens remembered; default 4 MiB. */
  maxRefusedChars?: number;
  /** Distinct tokens verified at once at most; default 1000. */
  maxVerifying?: number;
  /** The clock, in ms; default Date.now. */
  now?: () => number;
}

/**
 * Returns the caller's grant: synchronously for a cached token, as a promise
 * when the token must be verified. Throws (or rejects with) ChatError
 * UNAUTHENTICATED.
 */
export type Authenticator = (
  authorization: string | undefined,
) => Grant | Promise<Grant>;

interface Entry {
  grant: Grant;
  /** Past this (ms), the entry is stale and the token is verified again. */
  usableUntilMs: number;
}

const BEARER = /^Bearer +([A-Za-z0-9_=-]+\.[A-Za-z0-9_=-]+\.[A-Za-z0-9_=-]*)$/i;

/** Creates an authenticator over a verifier. */
export function createAuthenticator(
  options: AuthenticatorOptions,
): Authenticator {
  const { verify, leewaySeconds } = options;
  const maxEntries = options.maxEntries ?? 10_000;
  const now = options.now ?? Date.now;
  const cache = new Map<string, Entry>();
  const verifying = new Map<string, Promise<Grant>>();
  const maxVerifying = options.maxVerifying ?? 1000;
  const refused = new Map<string, ChatError>();
  const maxRefusedChars = options.maxRefusedChars ?? 4 * 1024 * 1024;
  let refusedChars = 0;

  const refuse = (authorization: string, err: unknown): never => {
    if (
      !ChatError.is(err) || (err instanceof TokenRejected && err.passes) ||
      authorization.length > maxRefusedChars || refused.has(authorization)
    ) {
      throw err;
    }
    while (
      refused.size >= maxEntries ||
      refusedChars + authorization.length > maxRefusedChars
    ) {
      const oldest = refused.keys().next().value!;
      refused.delete(oldest);
      refusedChars -= oldest.length;
    }
    refused.set(authorization, err as ChatError);
    refusedChars += authorization.length;
    throw err;
  };

  const remember = (token: string, grant: Grant) => {
    if (cache.size >= maxEntries) {
      cache.delete(cache.keys().next().value!);
    }
    cache.set(token, {
      grant,
      usableUntilMs: grant.expiresAtMs === undefined
        ? Infinity
        : grant.expiresAtMs + leewaySeconds * 1000,
    });
  };

  /** Verifies `token` (its cache key `key`), sharing one check at a time. */
  function verifyOnce(key: string, token: string): Promise<Grant> {
    const pending = verifying.get(key);
    if (pending !== undefined) return pending;
    if (verifying.size >= maxVerifying) {
      throw new ChatError(
        "unavailable",
        `too many new tokens being verified at once (${maxVerifying}): retry`,
      );
    }
    const grant = verify(token).then((claims) => {
      const grant = grantFromClaims(claims);
      remember(key, grant);
      return grant;
    }).catch((err) => refuse(key, err)).finally(() => verifying.delete(key));
    verifying.set(key, grant);
    return grant;
  }

  /**
   * The grant cached under `key` while usable, or the refusal remembered
   * for it, thrown; undefined when it has to be verified.
   */
  function known(key: string): Grant | undefined {
    const hit = cache.get(key);
    if (hit !== undefined) {
      if (now() < hit.usableUntilMs) return hit.grant;
      cache.delete(key);
    }
    const refusal = refused.get(key);
    if (refusal !== undefined) throw refusal;
    return undefined;
  }

  return (authorization) => {
    if (authorization === undefined || authorization === "") {
      throw new ChatError(
        "unauthenticated",
        "missing token: send authorization: Bearer <JWT>",
      );
    }
    const hit = known(authorization);
    if (hit !== undefined) return hit;
    const match = BEARER.exec(authorization);
    if (match === null) {
      throw new ChatError(
        "unauthenticated",
        "malformed authorization: expected Bearer <JWT>",
      );
    }
    // One entry per token, whatever the spaces or the scheme's case: keyed
    // by the header as sent, `Bearer` + N spaces + one valid token made a
    // new entry (and a signature check) for every N, ~67 KB each.
    const key = authorization.length === 7 + match[1].length &&
        authorization.startsWith("Bearer ")
      ? authorization
      : `Bearer ${match[1]}`;
    return (key === authorization ? undefined : known(key)) ??
      verifyOnce(key, match[1]);
  };
}
