/**
 * Who may do what, per call: the one object the transport asks.
 *
 * Auth on (an authenticator is given): the caller is the token's user,
 * requests act as that user within the token's rooms and scope, and limits
 * count per user. Auth off: anyone may do anything, as before, and limits
 * count per connection (`peer`).
 *
 * @module
 */
import { ChatError } from "../rooms/errors.ts";
import type { Authenticator } from "./authenticator.ts";
import type { ConcurrencyLimit } from "../../limits/concurrency_limit.ts";
import { actingUser, checkAccess, type Grant } from "./grant.ts";
import type { RateLimiter } from "../../limits/rate_limiter.ts";

/** One call's caller. */
export interface Caller {
  /** The token's grant; undefined when auth is off. */
  readonly grant?: Grant;
  /** What limits count by: the user, or the connection when auth is off. */
  readonly key: string;
}

/** Options of {@linkcode Access}; every part is optional. */
export interface AccessOptions {
  authenticate?: Authenticator;
  /** Seconds a token stays usable after `exp` (for ending streams). */
  leewaySeconds?: number;
  rateLimit?: RateLimiter;
  maxSubscriptions?: ConcurrencyLimit;
  /** The wall clock, in ms, for token expiry; default Date.now. */
  now?: () => number;
  /**
   * A monotonic clock, in ms, for the rate limit; default performance.now.
   * Not the wall clock: a step back (NTP, a resumed VM) would stop every
   * bucket from refilling until the clock caught up again.
   */
  monotonic?: () => number;
}

const ANYONE: Caller = Object.freeze({ key: "" });

/** The access rules of one core. */
export class Access {
  readonly #authenticate?: Authenticator;
  readonly #leewayMs: number;
  readonly #rate?: RateLimiter;
  readonly #subscriptions?: ConcurrencyLimit;
  readonly #now: () => number;
  readonly #monotonic: () => number;
  /** Whether a connection key is needed (limits on, auth off). */
  readonly #perConnection: boolean;

  constructor(options: AccessOptions = {}) {
    this.#authenticate = options.authenticate;
    this.#leewayMs = (options.leewaySeconds ?? 0) * 1000;
    this.#rate = options.rateLimit;
    this.#subscriptions = options.maxSubscriptions;
    this.#now = options.now ?? Date.now;
    this.#monotonic = options.monotonic ?? (() => performance.now());
    this.#perConnection = this.#authenticate === undefined &&
      (this.#rate !== undefined || this.#subscriptions !== undefined);
  }

  /** True when calls need a token. */
  get authenticated(): boolean {
    return this.#authenticate !== undefined;
  }

  /**
   * The caller of a call with this `authorization` metadata, from a
   * connection named by `peer()` (asked only when needed). Synchronous for
   * an open core or a cached token; throws or rejects with UNAUTHENTICATED.
   */
  caller(
    authorization: string | undefined,
    peer: () => string,
  ): Caller | Promise<Caller> {
    if (this.#authenticate === undefined) {
      return this.#perConnection ? { key: peer() } : ANYONE;
    }
    const grant = this.#authenticate(authorization);
    return grant instanceof Promise
      ? grant.then((g) => ({ grant: g, key: g.user }))
      : { grant, key: grant.user };
  }

  /**
   * The user a request acts as: the token's (an empty `user` is filled in;
   * another user's name is PERMISSION_DENIED), or `user` as sent when auth
   * is off.
   */
  userOf(caller: Caller, user: string): string {
    return caller.grant === undefined ? user : actingUser(caller.grant, user);
  }

  /**
   * Checks one message into `room`: the token's scope and rooms, then the
   * rate limit (RESOURCE_EXHAUSTED with a retry hint). Call after the
   * request was validated, so a bad request is never counted.
   */
  allowPost(caller: Caller, room: string): void {
    if (caller.grant !== undefined) checkAccess(caller.grant, "publish", room);
    this.#takeRate(caller);
  }

  /**
   * Checks a subscription to `room`, takes one token of the caller's rate
   * bucket and a subscription slot; returns the slot's release (call it
   * when the subscription ends).
   *
   * A subscription costs what a message does because with `--presence` it
   * is one: a JOIN to the room now and a LEAVE later, so a subscribe/cancel
   * loop would otherwise flood a room past the rate limit.
   */
  allowSubscribe(caller: Caller, room: string): () => void {
    // What a presence query checks (the room and the subscribe scope, one
    // rate token), and a place.
    this.allowPresence(caller, room);
    return this.#subscriptionPlace(caller);
  }

  /** One of the caller's subscription places, or RESOURCE_EXHAUSTED. */
  #subscriptionPlace(caller: Caller): () => void {
    if (this.#subscriptions === undefined) return noop;
    const release = this.#subscriptions.acquire(caller.key);
    if (release === undefined) {
      throw new ChatError(
        "resource_exhausted",
        `too many subscriptions: at most ${this.#subscriptions.max} at once per ${
          caller.grant === undefined ? "connection" : "user"
        }`,
      );
    }
    return release;
  }

  /**
   * Checks a presence query of `room`: who is in a room is what its
   * subscribers see, so it needs the token's `subscribe` scope and the room,
   * and it takes a token of the caller's rate bucket (each query reads the
   * broker).
   */
  allowPresence(caller: Caller, room: string): void {
    if (caller.grant !== undefined) {
      checkAccess(caller.grant, "subscribe", room);
    }
    this.#takeRate(caller);
  }

  /**
   * Checks a StreamMetrics stream: any authenticated caller, one token of
   * its rate bucket and one of its subscription places (a long stream that
   * sends every second, as a subscription does); returns the place's
   * release.
   */
  allowMetrics(caller: Caller): () => void {
    this.#takeRate(caller);
    return this.#subscriptionPlace(caller);
  }

  /** One token of the caller's bucket, or RESOURCE_EXHAUSTED with the wait. */
  #takeRate(caller: Caller): void {
    if (this.#rate === undefined) return;
    const waitMs = this.#rate.take(caller.key, this.#monotonic());
    if (waitMs > 0) {
      throw new ChatError(
        "resource_exhausted",
        `rate limit exceeded: retry after ${waitMs} ms`,
        { retryAfterMs: waitMs },
      );
    }
  }

  /**
   * Ms until the caller's token is no longer accepted (its `exp` plus the
   * leeway); undefined when it never expires or auth is off.
   */
  expiresInMs(caller: Caller): number | undefined {
    const exp = caller.grant?.expiresAtMs;
    if (exp === undefined) return undefined;
    return Math.max(0, exp + this.#leewayMs - this.#now());
  }
}

function noop(): void {}
