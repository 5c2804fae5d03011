/**
 * The HPACK header block of a gRPC request, built from pre-encoded pieces.
 *
 * The encoder is stateless (no dynamic table), so separately encoded field
 * runs can be concatenated: the parts that never change for an origin
 * (`:method`, `:scheme`, `:authority`, `content-type`, `te`, `user-agent`)
 * are encoded once, each `:path` once, and only the deadline and metadata
 * per call.
 *
 * @module
 */
import { HpackEncoder } from "../../protocol/http2/hpack.ts";
import { formatGrpcTimeout } from "../../protocol/mod.ts";
import { isReservedHeader } from "./headers.ts";

const MAX_CACHED_PATHS = 1024;
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9a-z]+$/;
const BAD_VALUE = /[\0\r\n]/;

/** Builds request header blocks for one origin. */
export class RequestHeaderEncoder {
  readonly #encoder = new HpackEncoder();
  readonly #head: Uint8Array;
  readonly #tail: Uint8Array;
  readonly #paths = new Map<string, Uint8Array>();
  // The whole block of a call without metadata or deadline, per path: the
  // writer copies a block into its buffer, so one can serve every call.
  readonly #plain = new Map<string, Uint8Array>();

  /** `scheme` is "http" or "https"; `authority` is host[:port]. */
  constructor(scheme: string, authority: string) {
    this.#head = this.#encoder.encode([
      [":method", "POST"],
      [":scheme", scheme],
      [":authority", authority],
    ]);
    this.#tail = this.#encoder.encode([
      ["content-type", "application/grpc"],
      ["te", "trailers"],
      ["user-agent", "chat-edge/1"],
    ]);
  }

  /**
   * The block for one call: `metadata` minus reserved names, lower-cased.
   * Throws for a name or value HTTP/2 cannot carry.
   */
  build(
    path: string,
    metadata: Readonly<Record<string, string>>,
    timeoutMs: number | undefined,
  ): Uint8Array {
    const bare = timeoutMs === undefined && isEmpty(metadata);
    if (bare) {
      const block = this.#plain.get(path);
      if (block !== undefined) return block;
    }
    let pathBlock = this.#paths.get(path);
    if (pathBlock === undefined) {
      if (BAD_VALUE.test(path)) throw new Error("invalid character in :path");
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
        fields.push(["grpc-timeout", formatGrpcTimeout(timeoutMs)]);
      }
      for (const key of keys) {
        const name = key.toLowerCase();
        if (isReservedHeader(name)) continue;
        const value = metadata[key];
        if (!TOKEN.test(name)) {
          throw new Error(`invalid header name ${JSON.stringify(key)}`);
        }
        if (BAD_VALUE.test(value)) {
          throw new Error(`invalid character in header ${name}`);
        }
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
    if (bare && this.#plain.size < MAX_CACHED_PATHS) this.#plain.set(path, out);
    return out;
  }
}

function isEmpty(record: Readonly<Record<string, string>>): boolean {
  for (const _ in record) return false;
  return true;
}
