/**
 * The shortest HS256 secret the core verifies with, and so the shortest
 * anything here signs with: a key shorter than the hash is guessable
 * offline (RFC 7518 section 3.2). Plain TypeScript with no imports, for the
 * core, the edge (alone on Deno Deploy) and `deno task token` alike.
 *
 * @module
 */

/** Shortest HS256 secret, in UTF-8 bytes. */
export const MIN_HS256_SECRET_BYTES = 32;

/**
 * Why `secret` (given as `name`) cannot sign or verify HS256 tokens, or
 * undefined: the one message the core, the edge and the token tool give.
 */
export function hs256SecretError(
  name: string,
  secret: string,
): string | undefined {
  return new TextEncoder().encode(secret).byteLength < MIN_HS256_SECRET_BYTES
    ? `${name} must be at least ${MIN_HS256_SECRET_BYTES} bytes`
    : undefined;
}
