/**
 * Signs HS256 tokens for development and tests (`deno task token`, the
 * edge's `/auth/dev-token`): the same claims the core reads (grant.ts).
 *
 * @example
 * ```ts
 * const token = await signDevToken({ secret: "x".repeat(32), user: "alice", rooms: ["team-*"] });
 * ```
 *
 * @module
 */
import { SignJWT } from "jose";

/** What a development token says. */
export interface DevTokenOptions {
  /** The HS256 secret (the core's --jwt-secret). */
  secret: string;
  /** `sub`: the user. */
  user: string;
  /** `rooms`: names or `prefix*` patterns; absent means every room. */
  rooms?: readonly string[];
  /** `scope`: "publish", "subscribe" or both, space-separated. */
  scope?: string;
  /** Lifetime: seconds, or a jose time span such as "1h", "30m". */
  ttl?: number | string;
  issuer?: string;
  audience?: string;
}

/** Signs a token; `ttl` defaults to one hour. */
export function signDevToken(options: DevTokenOptions): Promise<string> {
  const claims: Record<string, unknown> = {};
  if (options.rooms !== undefined) claims.rooms = [...options.rooms];
  if (options.scope !== undefined) claims.scope = options.scope;
  const ttl = options.ttl ?? "1h";
  const jwt = new SignJWT(claims)
    .setProtectedHeader({ alg: "HS256", typ: "JWT" })
    .setSubject(options.user)
    .setIssuedAt()
    .setExpirationTime(
      typeof ttl === "number" ? Math.floor(Date.now() / 1000) + ttl : ttl,
    );
  if (options.issuer) jwt.setIssuer(options.issuer);
  if (options.audience) jwt.setAudience(options.audience);
  return jwt.sign(new TextEncoder().encode(options.secret));
}
