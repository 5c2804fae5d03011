/**
 * Helpers shared by the HPACK and Huffman tests.
 *
 * @module
 */

/** Bytes from a hex string (whitespace ignored), as the RFC prints them. */
export const hex = (s: string): Uint8Array =>
  Uint8Array.from(
    s.replace(/\s+/g, "").match(/../g) ?? [],
    (h) => parseInt(h, 16),
  );

/** The bytes of an ASCII string. */
export const ascii = (s: string): Uint8Array => new TextEncoder().encode(s);

/** A small deterministic PRNG so failures reproduce. */
export function prng(seed: number): () => number {
  return () => {
    seed = (seed * 1103515245 + 12345) >>> 0;
    return seed >>> 16;
  };
}
