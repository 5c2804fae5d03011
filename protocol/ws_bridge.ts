/**
 * Wire format of the WebSocket bridge: one gRPC-Web envelope per binary frame.
 *
 * Shared by the browser page (web/) and the edge (`edge/websocket.ts`) so
 * both ends read the same bytes the same way; the envelope and trailer
 * encodings are the ones beside it in `protocol/`. The full spec is in `web/WEBSOCKET.md`. A WebSocket frame
 * already has a length, so the envelope's own length must match it exactly: a
 * mismatch is a protocol error, never a reason to buffer.
 *
 * @module
 */
import {
  encodeEnvelope,
  ENVELOPE_HEADER_BYTES,
  FLAG_TRAILER,
  readEnvelopeLength,
} from "./envelope.ts";
import { ProtocolError } from "./errors.ts";
import {
  encodeGrpcWebTrailer,
  parseGrpcWebTrailer,
} from "./grpc_web_trailer.ts";
import { Code } from "./status.ts";

/** Envelope flag of a message frame. */
export const FLAG_DATA = 0x00;
/** Envelope flag of the end frame: half-close from the client, status from the server. */
export const FLAG_END = FLAG_TRAILER;

/** The first (text) frame a client sends: which method, and its call options. */
export interface BridgeCallHeader {
  /** gRPC path, e.g. `/chat.ChatService/Chat`. */
  path: string;
  /** Request metadata; the bridge forwards only its allow-list. */
  metadata?: Record<string, string>;
  /** Deadline in milliseconds from the moment the bridge reads this frame. */
  timeoutMs?: number;
}

/** The status a call ends with, carried by the server's end frame. */
export interface BridgeStatus {
  code: number;
  message: string;
  trailers: Record<string, string>;
}

/** One decoded frame. */
export interface BridgeFrame {
  flag: number;
  payload: Uint8Array;
}

/** Wraps a payload in a 5-byte envelope (flag, big-endian length). */
export function encodeFrame(flag: number, payload: Uint8Array): Uint8Array {
  return encodeEnvelope(flag, payload);
}

/**
 * Reads one envelope that must fill the whole WebSocket frame.
 *
 * Throws a `ProtocolError` on a short frame or a length that disagrees with
 * the frame; the bridge answers either with INVALID_ARGUMENT.
 */
export function decodeFrame(frame: Uint8Array): BridgeFrame {
  if (frame.byteLength < ENVELOPE_HEADER_BYTES) {
    throw new ProtocolError("truncated", "frame shorter than an envelope");
  }
  const length = readEnvelopeLength(frame, 0);
  if (length !== frame.byteLength - ENVELOPE_HEADER_BYTES) {
    throw new ProtocolError(
      "truncated",
      `envelope says ${length} bytes, frame holds ${frame.byteLength - 5}`,
    );
  }
  return { flag: frame[0], payload: frame.subarray(ENVELOPE_HEADER_BYTES) };
}

/** Encodes a status as a complete end frame (a gRPC-Web trailer frame). */
export function encodeStatusFrame(status: BridgeStatus): Uint8Array {
  const lines: [string, string][] = [["grpc-status", String(status.code)]];
  if (status.message) {
    // gRPC percent-encodes grpc-message; it also keeps CR/LF off the line.
    lines.push(["grpc-message", encodeURIComponent(status.message)]);
  }
  for (const [key, value] of Object.entries(status.trailers)) {
    const lower = key.toLowerCase();
    if (lower === "grpc-status" || lower === "grpc-message") continue;
    if (/[\r\n]/.test(value)) continue;
    lines.push([lower, value]);
  }
  return encodeGrpcWebTrailer(lines);
}

/** Reads the payload of an end frame; one with no valid grpc-status reads as INTERNAL. */
export function decodeStatus(payload: Uint8Array): BridgeStatus {
  let trailers: Record<string, string>;
  try {
    trailers = parseGrpcWebTrailer(payload);
  } catch (err) {
    return {
      code: Code.INTERNAL,
      message: `bad end frame: ${err}`,
      trailers: {},
    };
  }
  const code = Number(trailers["grpc-status"]);
  const raw = trailers["grpc-message"] ?? "";
  delete trailers["grpc-status"];
  delete trailers["grpc-message"];
  if (
    !Number.isInteger(code) || code < Code.OK || code > Code.UNAUTHENTICATED
  ) {
    return {
      code: Code.INTERNAL,
      message: "end frame without a valid grpc-status",
      trailers,
    };
  }
  let message = raw;
  try {
    message = decodeURIComponent(raw);
  } catch {
    // A peer that did not percent-encode: show its text as it came.
  }
  return { code, message, trailers };
}
