/**
 * The page's bearer token: pasted by the user, or in development asked of the
 * edge.
 *
 * An edge started with a development secret answers
 * `GET /auth/dev-token?user=NAME` with `{"token": "..."}`; without one it
 * answers 204 (older edges: 404) and the page runs without a token (a core
 * without auth accepts that).
 * A pasted token always wins, so the page works against a production edge too.
 *
 * @module
 */

/** Where the token in use came from. */
export type TokenSource = "pasted" | "development" | "none";

/** The token to send (`""` for none) and where it came from. */
export interface PageToken {
  token: string;
  source: TokenSource;
}

/** Picks the token for `user`: `pasted` if set, else the edge's dev token. */
export async function resolveToken(
  pasted: string,
  user: string,
  origin: string,
  fetchFn: typeof fetch = fetch,
): Promise<PageToken> {
  const token = pasted.trim().replace(/^Bearer\s+/i, "");
  if (token !== "") return { token, source: "pasted" };
  const url = new URL("/auth/dev-token", origin);
  url.searchParams.set("user", user);
  const res = await fetchFn(url, { headers: { accept: "application/json" } });
  if (res.status === 204 || res.status === 404) {
    await res.body?.cancel();
    return { token: "", source: "none" };
  }
  if (!res.ok) {
    await res.body?.cancel();
    throw new Error(
      `the edge refused a development token (HTTP ${res.status})`,
    );
  }
  const body = await res.json() as { token?: unknown };
  if (typeof body.token !== "string" || body.token === "") {
    throw new Error("the edge's development token answer has no token");
  }
  return { token: body.token, source: "development" };
}

/** The metadata that carries `token`, or none. */
export function authMetadata(token: string): Record<string, string> {
  return token ? { authorization: `Bearer ${token}` } : {};
}

/**
 * The `exp` of a JWT in milliseconds since the epoch, read without checking
 * the signature (the page only times a renewal with it); undefined when the
 * token is not a JWT or has no `exp`.
 */
export function tokenExpiryMs(token: string): number | undefined {
  const payload = token.split(".")[1];
  if (payload === undefined) return undefined;
  try {
    const json = atob(payload.replace(/-/g, "+").replace(/_/g, "/"));
    const exp = (JSON.parse(json) as { exp?: unknown }).exp;
    return typeof exp === "number" && Number.isFinite(exp)
      ? exp * 1000
      : undefined;
  } catch {
    return undefined;
  }
}

/**
 * When to renew a token that expires at `expiryMs`: a minute before, or
 * halfway there for one that lasts less than two minutes.
 */
export function renewalDelayMs(expiryMs: number, nowMs: number): number {
  const left = expiryMs - nowMs;
  return Math.max(0, left > 120_000 ? left - 60_000 : left / 2);
}

/** The page's token as its streams see it. */
export interface PageTokenSource {
  /** The token in use now ("" for none). */
  current(): string;
  /** True while the token in use has expired and a new one is on its way. */
  renewing(): boolean;
}

/**
 * What a stream's refusal (UNAUTHENTICATED) of its token means: `opened()`
 * at each open notes the token sent; `final()` says whether no retry can
 * help, which is not so when the page has replaced that token since, or its
 * expired token's renewal is still to come. Without a source every refusal
 * is final.
 */
export function tokenRefusals(source?: PageTokenSource): {
  opened(): void;
  final(): boolean;
} {
  let openedWith = source?.current();
  return {
    opened: () => void (openedWith = source?.current()),
    final: () =>
      source === undefined ||
      (source.current() === openedWith && !source.renewing()),
  };
}
