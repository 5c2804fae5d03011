/**
 * Wire format of the WebSocket bridge: one gRPC-Web envelope per binary frame.
 *
 * Shared by the browser page and `edge/websocket.ts` so both ends read the same
 * bytes the same way; it touches neither the DOM nor Deno, so both can import
 * it. The full spec is in `web/WEBSOCKET.md`. A WebSocket frame already has a
 * length, so the envelope's own length must match it exactly: a mismatch is a
 * protocol error, never a reason to buffer.
 *
 * @module
 */

/** Envelope flag of a message frame. */
export const FLAG_DATA = 0x00;
/** Envelope flag of the end frame: half-close from the client, status from the server. */
export const FLAG_END = 0x80;

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
  const out = new Uint8Array(5 + payload.byteLength);
  const view = new DataView(out.buffer);
  view.setUint8(0, flag);
  view.setUint32(1, payload.byteLength);
  out.set(payload, 5);
  return out;
}

/**
 * Reads one envelope that must fill the whole WebSocket frame.
 *
 * Throws a `RangeError` on a short frame or a length that disagrees with the
 * frame; the caller turns it into an INVALID_ARGUMENT / INTERNAL status.
 */
export function decodeFrame(frame: Uint8Array): BridgeFrame {
  if (frame.byteLength < 5) {
    throw new RangeError(
      `frame of ${frame.byteLength} bytes is shorter than an envelope`,
    );
  }
  const view = new DataView(frame.buffer, frame.byteOffset, frame.byteLength);
  const length = view.getUint32(1);
  if (length !== frame.byteLength - 5) {
    throw new RangeError(
      `envelope says ${length} bytes, frame holds ${frame.byteLength - 5}`,
    );
  }
  return { flag: view.getUint8(0), payload: frame.subarray(5) };
}

/** Encodes a status as the gRPC-Web trailer block: `key: value\r\n` lines. */
export function encodeStatus(status: BridgeStatus): Uint8Array {
  const lines = [`grpc-status: ${status.code}`];
  if (status.message) {
    lines.push(`grpc-message: ${encodeURIComponent(status.message)}`);
  }
  for (const [key, value] of Object.entries(status.trailers)) {
    const lower = key.toLowerCase();
    if (lower === "grpc-status" || lower === "grpc-message") continue;
    lines.push(`${lower}: ${value}`);
  }
  return new TextEncoder().encode(lines.map((l) => l + "\r\n").join(""));
}

/** Parses a trailer block; a block with no valid grpc-status reads as INTERNAL (13). */
export function decodeStatus(block: Uint8Array): BridgeStatus {
  const trailers: Record<string, string> = {};
  for (const line of new TextDecoder().decode(block).split("\r\n")) {
    const colon = line.indexOf(":");
    if (colon <= 0) continue;
    trailers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1)
      .trim();
  }
  const code = Number(trailers["grpc-status"]);
  const raw = trailers["grpc-message"] ?? "";
  delete trailers["grpc-status"];
  delete trailers["grpc-message"];
  if (!Number.isInteger(code) || code < 0 || code > 16) {
    return {
      code: 13,
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
