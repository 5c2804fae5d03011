/**
 * Message compression at the edge: gzip, both ways, for Connect and
 * gRPC-Web. The edge decompresses what browsers send and compresses what
 * they accept; the link to the core stays uncompressed, so the core's fast
 * paths and the edge's own framing never see a compressed frame from it.
 *
 * The algorithm is connect-node's `compressionGzip` (node:zlib), the one
 * connect-es servers use: its decompression stops at the message limit
 * (zlib's `maxOutputLength`), so a gzip bomb ends the call with
 * RESOURCE_EXHAUSTED after at most that many bytes.
 *
 * @module
 */
import type { Compression } from "@connectrpc/connect/protocol";
import { compressionGzip } from "@connectrpc/connect-node";

/** The encodings the edge accepts and offers, in preference order. */
export const COMPRESSIONS: readonly Compression[] = [compressionGzip];

/**
 * Messages smaller than this go out uncompressed (flag 0) even when the
 * client accepts gzip: below it, gzip costs more than it saves. The same
 * default as connect-es.
 */
export const COMPRESS_MIN_BYTES = 1024;

/** Value of grpc-accept-encoding / accept-encoding the edge answers with. */
export const ACCEPTED_ENCODINGS: string = COMPRESSIONS.map((c) => c.name)
  .join(",");

/** The outcome of reading grpc-encoding and grpc-accept-encoding. */
export interface Negotiated {
  /** How request messages with the compressed flag are decoded. */
  request: Compression | undefined;
  /** How response messages are compressed (undefined: not at all). */
  response: Compression | undefined;
  /** Set when the client's encoding is not supported. */
  unsupported?: string;
}

const NONE: Negotiated = Object.freeze({
  request: undefined,
  response: undefined,
});

/**
 * Picks the compressions for a gRPC-Web call from its headers. Without
 * either header (the usual browser call) this is one comparison each.
 */
export function negotiateGrpcWeb(
  encoding: string | null,
  accept: string | null,
): Negotiated {
  if (encoding === null && accept === null) return NONE;
  let request: Compression | undefined;
  if (encoding !== null && encoding !== "identity") {
    request = COMPRESSIONS.find((c) => c.name === encoding.trim());
    if (request === undefined) {
      return { request, response: undefined, unsupported: encoding };
    }
  }
  let response: Compression | undefined;
  if (accept !== null) {
    const names = accept.split(",").map((s) => s.trim());
    response = COMPRESSIONS.find((c) => names.includes(c.name));
  }
  return { request, response };
}
