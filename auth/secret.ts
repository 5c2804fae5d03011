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

/** Whether `secret` is too short to sign or verify HS256 tokens with. */
export function hs256SecretTooShort(secret: string): boolean {
  return new TextEncoder().encode(secret).byteLength < MIN_HS256_SECRET_BYTES;
}
