/**
 * gRPC length-prefixed framing, done once per message on the server side.
 *
 * A broadcast is framed once (1 flag byte, 4-byte big-endian length, payload)
 * and the same framed buffer goes to every subscriber, so grpc-js's
 * per-subscriber `serializeMessage` (an allocation and a copy each) is skipped.
 * Compression is never used by this server, so the flag byte is always 0.
 */
import { Buffer } from "node:buffer";

/** Bytes of the gRPC message prefix. */
export const PREFIX_BYTES = 5;

/** Returns `payload` with the 5-byte gRPC prefix, in one new buffer. */
export function frameMessage(payload: Uint8Array): Buffer {
  const framed = Buffer.allocUnsafe(PREFIX_BYTES + payload.byteLength);
  framed[0] = 0;
  framed.writeUInt32BE(payload.byteLength, 1);
  framed.set(payload, PREFIX_BYTES);
  return framed;
}

/** The payload of a framed message, without copying. */
export function payloadOf(framed: Uint8Array): Uint8Array {
  return framed.subarray(PREFIX_BYTES);
}
