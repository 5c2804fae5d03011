/**
 * Byte helpers shared by the protocol code, the edge, the tools and the
 * tests.
 *
 * @module
 */

/** `parts` joined into one new buffer. */
export function concatBytes(
  parts: readonly Uint8Array[],
): Uint8Array<ArrayBuffer> {
  let size = 0;
  for (const p of parts) size += p.byteLength;
  const out = new Uint8Array(size);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.byteLength;
  }
  return out;
}
