/**
 * Turns a gRPC `grpc-status-details-bin` trailer into Connect error details.
 *
 * gRPC carries rich error details as a base64 google.rpc.Status in a
 * trailer; Connect carries them as a `details` list in the JSON error. The
 * edge translates between the two so a Connect client sees the same details
 * a gRPC-Web client would, without the edge knowing the detail types.
 *
 * @module
 */
import { base64Decode, BinaryReader, WireType } from "@bufbuild/protobuf/wire";

/** A detail as Connect's ConnectError accepts it. */
export interface RawDetail {
  type: string;
  value: Uint8Array;
}

/**
 * Decodes the details of a base64 google.rpc.Status; returns [] for
 * anything malformed (details are optional, the status code still stands).
 */
export function decodeStatusDetails(base64: string | undefined): RawDetail[] {
  if (!base64) return [];
  try {
    const reader = new BinaryReader(base64Decode(base64));
    const out: RawDetail[] = [];
    while (reader.pos < reader.len) {
      const [field, wire] = reader.tag();
      if (field === 3 && wire === WireType.LengthDelimited) {
        out.push(readAny(reader.bytes()));
      } else {
        reader.skip(wire);
      }
    }
    return out;
  } catch {
    return [];
  }
}

function readAny(bytes: Uint8Array): RawDetail {
  const reader = new BinaryReader(bytes);
  let type = "";
  let value: Uint8Array = new Uint8Array(0);
  while (reader.pos < reader.len) {
    const [field, wire] = reader.tag();
    if (field === 1 && wire === WireType.LengthDelimited) {
      type = reader.string();
    } else if (field === 2 && wire === WireType.LengthDelimited) {
      value = reader.bytes();
    } else reader.skip(wire);
  }
  // Connect names the message type without the type URL's host part.
  return { type: type.slice(type.lastIndexOf("/") + 1), value };
}
