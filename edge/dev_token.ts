/**
 * `GET /auth/dev-token?user=NAME`: a one-hour HS256 token for NAME, signed
 * with the core's secret, so the chat page can sign in during development.
 *
 * Mounted only when the edge runs with `--dev-jwt-secret`; anyone who can
 * reach the edge then gets a token for any user, which is the point in
 * development and the reason it must never be set in production.
 *
 * @module
 */
import type { Handler } from "hono";
import { isServerUser } from "../auth/claims.ts";
import { signDevToken } from "../auth/dev_token.ts";

/** Longest user name the core accepts (server/rooms/validate.ts). */
const MAX_USER_LENGTH = 256;

/** What development tokens are signed with and say besides the user. */
export interface DevTokenSettings {
  /** The core's HS256 secret. */
  secret: string;
  /** `iss`, when the core requires one (its --jwt-issuer). */
  issuer?: string;
  /** `aud`, when the core requires one (its --jwt-audience). */
  audience?: string;
}

/**
 * The route's handler: 200 `{"token"}`, or 400 `{"error"}` without a user
 * or for a user the server speaks as.
 */
export function devTokenHandler(settings: DevTokenSettings): Handler {
  const { secret, issuer, audience } = settings;
  return async (c) => {
    const user = c.req.query("user") ?? "";
    if (user.trim() === "" || user.length > MAX_USER_LENGTH) {
      return c.json({
        error: `user must be 1 to ${MAX_USER_LENGTH} characters`,
      }, 400);
    }
    if (isServerUser(user)) {
      // The core refuses such a token: its lines would pass for the server's.
      return c.json({
        error: `user "${user}" is reserved for the server's own lines`,
      }, 400);
    }
    const token = await signDevToken({
      secret,
      user,
      ttl: 3600,
      issuer,
      audience,
    });
    c.header("cache-control", "no-store");
    return c.json({ token });
  };
}
