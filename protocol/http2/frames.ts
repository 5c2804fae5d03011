/**
 * HTTP/2 wire constants (RFC 9113 §6, §7, §11) and the few frame encoders
 * both HTTP/2 peers (the edge's client, the core's server) need outside their hot paths.
 *
 * Frame headers are read and written in place on byte arrays: the read loop
 * parses many frames per socket read without making an object per frame.
 *
 * @module
 */

/** Frame types (RFC 9113 §6). */
export const FrameType = {
  DATA: 0x0,
  HEADERS: 0x1,
  PRIORITY: 0x2,
  RST_STREAM: 0x3,
  SETTINGS: 0x4,
  PUSH_PROMISE: 0x5,
  PING: 0x6,
  GOAWAY: 0x7,
  WINDOW_UPDATE: 0x8,
  CONTINUATION: 0x9,
} as const;

/** Frame flags; END_STREAM and ACK share a bit on different frame types. */
export const Flag = {
  END_STREAM: 0x1,
  ACK: 0x1,
  END_HEADERS: 0x4,
  PADDED: 0x8,
  PRIORITY: 0x20,
} as const;

/** SETTINGS identifiers (RFC 9113 §6.5.2). */
export const Setting = {
  HEADER_TABLE_SIZE: 0x1,
  ENABLE_PUSH: 0x2,
  MAX_CONCURRENT_STREAMS: 0x3,
  INITIAL_WINDOW_SIZE: 0x4,
  MAX_FRAME_SIZE: 0x5,
  MAX_HEADER_LIST_SIZE: 0x6,
} as const;

/** Error codes of RST_STREAM and GOAWAY (RFC 9113 §7). */
export const ErrorCode = {
  NO_ERROR: 0x0,
  PROTOCOL_ERROR: 0x1,
  INTERNAL_ERROR: 0x2,
  FLOW_CONTROL_ERROR: 0x3,
  SETTINGS_TIMEOUT: 0x4,
  STREAM_CLOSED: 0x5,
  FRAME_SIZE_ERROR: 0x6,
  REFUSED_STREAM: 0x7,
  CANCEL: 0x8,
  COMPRESSION_ERROR: 0x9,
  CONNECT_ERROR: 0xa,
  ENHANCE_YOUR_CALM: 0xb,
  INADEQUATE_SECURITY: 0xc,
  HTTP_1_1_REQUIRED: 0xd,
} as const;

const ERROR_NAMES = Object.fromEntries(
  Object.entries(ErrorCode).map(([name, code]) => [code, name]),
) as Record<number, string>;

/** The name of an error code, or its hex value for an unknown one. */
export function errorName(code: number): string {
  return ERROR_NAMES[code] ?? `0x${code.toString(16)}`;
}

/** Bytes of a frame header. */
export const FRAME_HEADER_BYTES = 9;
/** The initial and smallest allowed SETTINGS_MAX_FRAME_SIZE. */
export const DEFAULT_MAX_FRAME_SIZE = 16384;
/** The largest allowed SETTINGS_MAX_FRAME_SIZE. */
export const MAX_MAX_FRAME_SIZE = 16777215;
/** The initial flow-control window of streams and the connection. */
export const DEFAULT_WINDOW = 65535;
/** The largest flow-control window (2^31 - 1). */
export const MAX_WINDOW = 0x7fffffff;
/** The largest stream identifier (2^31 - 1). */
export const MAX_STREAM_ID = 0x7fffffff;

/** The client connection preface (RFC 9113 §3.4), sent before any frame. */
export const CLIENT_PREFACE: Uint8Array = new TextEncoder().encode(
  "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
);

/**
 * A connection error: the connection ends with GOAWAY carrying `code`
 * (RFC 9113 §5.4.1).
 */
export class H2ConnectionError extends Error {
  override readonly name = "H2ConnectionError";

  constructor(readonly code: number, message: string) {
    super(message);
  }
}

/** Writes a 9-byte frame header at `at`. */
export function writeFrameHeader(
  buf: Uint8Array,
  at: number,
  length: number,
  type: number,
  flags: number,
  streamId: number,
): void {
  buf[at] = length >>> 16;
  buf[at + 1] = (length >>> 8) & 0xff;
  buf[at + 2] = length & 0xff;
  buf[at + 3] = type;
  buf[at + 4] = flags;
  writeUint32(buf, at + 5, streamId & MAX_STREAM_ID);
}

/** Writes a big-endian 32-bit unsigned integer. */
export function writeUint32(buf: Uint8Array, at: number, value: number): void {
  buf[at] = value >>> 24;
  buf[at + 1] = (value >>> 16) & 0xff;
  buf[at + 2] = (value >>> 8) & 0xff;
  buf[at + 3] = value & 0xff;
}

/** Reads a big-endian 32-bit unsigned integer. */
export function readUint32(buf: Uint8Array, at: number): number {
  return ((buf[at] << 24) | (buf[at + 1] << 16) | (buf[at + 2] << 8) |
    buf[at + 3]) >>> 0;
}

/** A whole SETTINGS frame (ACK when `pairs` is empty and `ack` is true). */
export function settingsFrame(
  pairs: readonly (readonly [id: number, value: number])[],
  ack = false,
): Uint8Array {
  const out = new Uint8Array(FRAME_HEADER_BYTES + 6 * pairs.length);
  writeFrameHeader(
    out,
    0,
    6 * pairs.length,
    FrameType.SETTINGS,
    ack ? Flag.ACK : 0,
    0,
  );
  let at = FRAME_HEADER_BYTES;
  for (const [id, value] of pairs) {
    out[at] = id >>> 8;
    out[at + 1] = id & 0xff;
    writeUint32(out, at + 2, value);
    at += 6;
  }
  return out;
}

/** A whole WINDOW_UPDATE frame. */
export function windowUpdateFrame(
  streamId: number,
  increment: number,
): Uint8Array {
  const out = new Uint8Array(FRAME_HEADER_BYTES + 4);
  writeFrameHeader(out, 0, 4, FrameType.WINDOW_UPDATE, 0, streamId);
  writeUint32(out, FRAME_HEADER_BYTES, increment);
  return out;
}

/** A whole GOAWAY frame without debug data. */
export function goawayFrame(lastStreamId: number, code: number): Uint8Array {
  const out = new Uint8Array(FRAME_HEADER_BYTES + 8);
  writeFrameHeader(out, 0, 8, FrameType.GOAWAY, 0, 0);
  writeUint32(out, FRAME_HEADER_BYTES, lastStreamId);
  writeUint32(out, FRAME_HEADER_BYTES + 4, code);
  return out;
}

/** A whole RST_STREAM frame. */
export function rstStreamFrame(streamId: number, code: number): Uint8Array {
  const out = new Uint8Array(FRAME_HEADER_BYTES + 4);
  writeFrameHeader(out, 0, 4, FrameType.RST_STREAM, 0, streamId);
  writeUint32(out, FRAME_HEADER_BYTES, code);
  return out;
}

/** A whole PING frame carrying 8 bytes of opaque data. */
export function pingFrame(data: Uint8Array, ack = false): Uint8Array {
  const out = new Uint8Array(FRAME_HEADER_BYTES + 8);
  writeFrameHeader(out, 0, 8, FrameType.PING, ack ? Flag.ACK : 0, 0);
  out.set(data.subarray(0, 8), FRAME_HEADER_BYTES);
  return out;
}
