/**
 * The HPACK header block of a gRPC request, built from pre-encoded pieces.
 *
 * The encoder is stateless (no dynamic table), so separately encoded field
 * runs can be concatenated: the parts that never change for an origin
 * (`:method`, `:scheme`, `:authority`, `content-type`, `te`, `user-agent`)
 * are encoded once, each `:path` once, and only the deadline and metadata
 * per call.
 *
 * It also bounds what a call may forward ({@linkcode MAX_METADATA_VALUE_BYTES},
 * {@linkcode MAX_METADATA_BYTES}) and measures each block's header list
 * (RFC 9113 §6.5.2) so the connection can hold it against the core's
 * SETTINGS_MAX_HEADER_LIST_SIZE. A server may answer a header list over
 * its limit with a connection error, ending every call on the shared
 * connection (the core did, a COMPRESSION_ERROR GOAWAY, before it answered
 * on the stream), so one client's oversized headers fail its own call here.
 * The path is bounded too ({@linkcode MAX_PATH_LENGTH}), before anything is
 * cached: each path's encoded block is kept for the next call.
 *
 * @module
 */
import { HpackEncoder } from "../../protocol/http2/hpack.ts";
import { isLowercaseToken } from "../../protocol/http2/field_name.ts";
import { formatGrpcTimeout } from "../../protocol/mod.ts";
import { isReservedHeader } from "./headers.ts";

const MAX_CACHED_PATHS = 1024;

/**
 * Longest `:path` sent upstream, in characters: `/package.Service/Method`
 * names are short, and each path's block is cached (1,024 of them), so an
 * unbounded one (a WebSocket bridge header carries any) let a client pin a
 * megabyte per call in the cache.
 */
export const MAX_PATH_LENGTH = 1024;
/**
 * Longest value of one forwarded metadata entry, in octets. The allow-listed
 * names carry a bearer token, a request id, a user agent: a few KiB at most.
 */
export const MAX_METADATA_VALUE_BYTES = 8 * 1024;

/**
 * Most octets of forwarded metadata (names and values) per call, well under
 * the 64 KiB header list the core accepts (with the edge's own fields added).
 */
export const MAX_METADATA_BYTES = 16 * 1024;

/** Per field in a header list size (RFC 9113 §6.5.2). */
const FIELD_OVERHEAD = 32;

/**
 * A call's metadata is over the edge's bounds, or its header list over the
 * core's limit: the call fails alone with RESOURCE_EXHAUSTED.
 */
export class HeaderLimitError extends Error {
  override readonly name = "HeaderLimitError";
}

/**
 * Why `metadata` may not be forwarded (over a bound above), or undefined.
 * Reserved names, which are never forwarded, do not count.
 */
export function metadataLimitError(
  metadata: Readonly<Record<string, string>>,
): string | undefined {
  let total = 0;
  for (const key in metadata) {
    const name = key.toLowerCase();
    if (isReservedHeader(name)) continue;
    const problem = metadataEntryError(name, metadata[key], total);
    if (problem !== undefined) return problem;
    total += name.length + metadata[key].length;
  }
  return undefined;
}

/** Why `path` may not be sent (over {@linkcode MAX_PATH_LENGTH}), or undefined. */
export function pathLimitError(path: string): string | undefined {
  return path.length > MAX_PATH_LENGTH
    ? `path of ${path.length} characters; the edge sends at most ${MAX_PATH_LENGTH}`
    : undefined;
}

function metadataEntryError(
  name: string,
  value: string,
  before: number,
): string | undefined {
  // HPACK here writes one octet per char (it refuses char codes above 255).
  if (value.length > MAX_METADATA_VALUE_BYTES) {
    return `metadata ${name} is ${value.length} bytes; the edge forwards at most ${MAX_METADATA_VALUE_BYTES} per value`;
  }
  const total = before + name.length + value.length;
  if (total > MAX_METADATA_BYTES) {
    return `metadata is over ${MAX_METADATA_BYTES} bytes in all (at ${name}); the edge forwards at most that`;
  }
  return undefined;
}

function fieldSize(name: string, value: string): number {
  return name.length + value.length + FIELD_OVERHEAD;
}
/** What a field value may not hold (RFC 9110 §5.5: VCHAR, obs-text, SP, HTAB). */
const BAD_VALUE = /[^\t\x20-\x7e\x80-\xff]/;

/** A name or value HTTP/2 cannot carry: the call's fault, never the core's. */
export class InvalidHeaderError extends Error {
  override readonly name = "InvalidHeaderError";
}

/** Why HTTP/2 cannot carry `name: value` (lower-case name), if it cannot. */
export function headerFieldError(
  name: string,
  value: string,
): string | undefined {
  if (!isLowercaseToken(name)) {
    return `invalid header name ${JSON.stringify(name)}`;
  }
  if (BAD_VALUE.test(value)) return `invalid character in header ${name}`;
  return undefined;
}

/** Builds request header blocks for one origin. */
export class RequestHeaderEncoder {
  readonly #encoder = new HpackEncoder();
  readonly #head: Uint8Array;
  readonly #tail: Uint8Array;
  readonly #paths = new Map<string, Uint8Array>();
  // The whole block of a call without metadata or deadline, per path: the
  // writer copies a block into its buffer, so one can serve every call.
  readonly #plain = new Map<string, Uint8Array>();
  // The header list size of the fields in #head and #tail.
  readonly #fixedSize: number;
  /** The header list size of the block `build()` returned last. */
  listSize = 0;

  /** `scheme` is "http" or "https"; `authority` is host[:port]. */
  constructor(scheme: string, authority: string) {
    const head: [string, string][] = [
      [":method", "POST"],
      [":scheme", scheme],
      [":authority", authority],
    ];
    const tail: [string, string][] = [
      ["content-type", "application/grpc"],
      ["te", "trailers"],
      ["user-agent", "chat-edge/1"],
    ];
    this.#head = this.#encoder.encode(head);
    this.#tail = this.#encoder.encode(tail);
    let fixed = 0;
    for (const [name, value] of [...head, ...tail]) {
      fixed += fieldSize(name, value);
    }
    this.#fixedSize = fixed;
  }

  /**
   * The block for one call: `metadata` minus reserved names, lower-cased;
   * its header list size is `listSize` afterwards. Throws
   * {@linkcode HeaderLimitError} for metadata over the edge's bounds, and
   * {@linkcode InvalidHeaderError} for a name or value HTTP/2 cannot carry.
   */
  build(
    path: string,
    metadata: Readonly<Record<string, string>>,
    timeoutMs: number | undefined,
  ): Uint8Array {
    const bare = timeoutMs === undefined && isEmpty(metadata);
    let listSize = this.#fixedSize + fieldSize(":path", path);
    if (bare) {
      const block = this.#plain.get(path);
      if (block !== undefined) {
        this.listSize = listSize;
        return block;
      }
    }
    let pathBlock = this.#paths.get(path);
    if (pathBlock === undefined) {
      const tooLong = pathLimitError(path);
      if (tooLong !== undefined) throw new HeaderLimitError(tooLong);
      if (BAD_VALUE.test(path)) {
        throw new InvalidHeaderError("invalid character in :path");
      }
      pathBlock = this.#encoder.encode([[":path", path]]);
      if (this.#paths.size < MAX_CACHED_PATHS) {
        this.#paths.set(path, pathBlock);
      }
    }
    let extra: Uint8Array | undefined;
    const keys = Object.keys(metadata);
    if (keys.length > 0 || timeoutMs !== undefined) {
      const fields: [string, string][] = [];
      if (timeoutMs !== undefined) {
        const timeout = formatGrpcTimeout(timeoutMs);
        fields.push(["grpc-timeout", timeout]);
        listSize += fieldSize("grpc-timeout", timeout);
      }
      let forwarded = 0;
      for (const key of keys) {
        const name = key.toLowerCase();
        if (isReservedHeader(name)) continue;
        const value = metadata[key];
        const problem = metadataEntryError(name, value, forwarded);
        if (problem !== undefined) throw new HeaderLimitError(problem);
        forwarded += name.length + value.length;
        listSize += fieldSize(name, value);
        const invalid = headerFieldError(name, value);
        if (invalid !== undefined) throw new InvalidHeaderError(invalid);
        fields.push([name, value]);
      }
      if (fields.length > 0) extra = this.#encoder.encode(fields);
    }
    const head = this.#head;
    const tail = this.#tail;
    const size = head.byteLength + pathBlock.byteLength + tail.byteLength +
      (extra?.byteLength ?? 0);
    const out = new Uint8Array(size);
    out.set(head, 0);
    out.set(pathBlock, head.byteLength);
    out.set(tail, head.byteLength + pathBlock.byteLength);
    if (extra) out.set(extra, size - extra.byteLength);
    this.listSize = listSize;
    if (bare && this.#plain.size < MAX_CACHED_PATHS) this.#plain.set(path, out);
    return out;
  }
}

function isEmpty(record: Readonly<Record<string, string>>): boolean {
  for (const _ in record) return false;
  return true;
}
