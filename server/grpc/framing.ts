/**
 * gRPC length-prefixed framing, done once per message on the server side.
 *
 * A broadcast is framed once (the envelope of protocol/envelope.ts) and the
 * same framed buffer goes to every subscriber, so grpc-js's per-subscriber
 * `serializeMessage` (an allocation and a copy each) is skipped. Compression
 * is never used by this server, so the flag byte is always 0. The buffer is
 * a Node Buffer because grpc-js and node:http2 streams take those.
 */
import { Buffer } from "node:buffer";
import {
  ENVELOPE_HEADER_BYTES,
  writeEnvelopeHeader,
} from "../../protocol/envelope.ts";

/** Bytes of the gRPC message prefix. */
export const PREFIX_BYTES = ENVELOPE_HEADER_BYTES;

/** A Buffer with room for a `size`-byte payload after its gRPC prefix. */
export function allocFramed(size: number): Buffer {
  const framed = Buffer.allocUnsafe(PREFIX_BYTES + size);
  writeEnvelopeHeader(framed, 0, 0, size);
  return framed;
}

/** Returns `payload` with the 5-byte gRPC prefix, in one new buffer. */
export function frameMessage(payload: Uint8Array): Buffer {
  const framed = allocFramed(payload.byteLength);
  framed.set(payload, PREFIX_BYTES);
  return framed;
}

/** The payload of a framed message, without copying. */
export function payloadOf(framed: Uint8Array): Uint8Array {
  return framed.subarray(PREFIX_BYTES);
}
