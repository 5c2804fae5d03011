/**
 * The Connect streaming end-stream message: an envelope with flag 0x02 whose
 * payload is JSON `{"error"?: {...}, "metadata"?: {...}}`.
 *
 * Connect streams carry their status and trailers here for the same reason
 * gRPC-Web has a trailer frame: fetch cannot read HTTP trailers.
 *
 * @module
 */
import { encodeEnvelope, FLAG_END_STREAM } from "./envelope.ts";
import { ProtocolError } from "./errors.ts";

/** A Connect error as JSON: `code` is the snake_case name, e.g. "not_found". */
export interface ConnectErrorJson {
  code: string;
  message?: string;
  details?: unknown[];
}

/** The decoded end-stream payload; metadata values are lists. */
export interface ConnectEndStream {
  error?: ConnectErrorJson;
  metadata: Record<string, string[]>;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });

/** Encodes an end-stream message as a complete frame. */
export function encodeConnectEndStream(
  end: Partial<ConnectEndStream>,
): Uint8Array<ArrayBuffer> {
  const json: Record<string, unknown> = {};
  if (end.error) json.error = end.error;
  if (end.metadata && Object.keys(end.metadata).length > 0) {
    json.metadata = end.metadata;
  }
  return encodeEnvelope(FLAG_END_STREAM, encoder.encode(JSON.stringify(json)));
}

/** Parses the payload of an end-stream frame (without its 5-byte prefix). */
export function parseConnectEndStream(data: Uint8Array): ConnectEndStream {
  let json: unknown;
  try {
    json = JSON.parse(decoder.decode(data));
  } catch {
    throw new ProtocolError("end-stream", "end-stream payload is not JSON");
  }
  if (!isObject(json)) {
    throw new ProtocolError(
      "end-stream",
      "end-stream payload is not an object",
    );
  }
  const metadata: Record<string, string[]> = {};
  if (json.metadata !== undefined) {
    if (!isObject(json.metadata)) {
      throw new ProtocolError(
        "end-stream",
        "end-stream metadata is not an object",
      );
    }
    for (const [name, values] of Object.entries(json.metadata)) {
      if (
        !Array.isArray(values) || !values.every((v) => typeof v === "string")
      ) {
        throw new ProtocolError(
          "end-stream",
          `metadata ${name} is not a string list`,
        );
      }
      metadata[name.toLowerCase()] = values;
    }
  }
  if (json.error === undefined || json.error === null) return { metadata };
  const error = json.error;
  if (!isObject(error) || typeof error.code !== "string") {
    throw new ProtocolError("end-stream", "end-stream error has no code");
  }
  if (error.message !== undefined && typeof error.message !== "string") {
    throw new ProtocolError(
      "end-stream",
      "end-stream error message is not a string",
    );
  }
  return {
    metadata,
    error: {
      code: error.code,
      ...(error.message !== undefined ? { message: error.message } : {}),
      ...(Array.isArray(error.details) ? { details: error.details } : {}),
    },
  };
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}
