/**
 * Validation of the bridge's call header and its metadata allow-list.
 *
 * The header is JSON from an untrusted page, so every field is checked for
 * type and shape; anything off makes the whole header invalid rather than
 * being half-used. Metadata names outside the allow-list, protocol names
 * (`grpc-*`, pseudo-headers) and values with characters a header cannot
 * carry (control characters, anything past printable ASCII) are dropped,
 * never forwarded (the edge's HTTP paths follow the same rule).
 *
 * @module
 */
import type { BridgeCallHeader } from "../protocol/ws_bridge.ts";
import { MAX_PATH_LENGTH } from "./upstream/request_headers.ts";

/** A gRPC method path, at most MAX_PATH_LENGTH characters (the upstream's bound). */
const PATH = /^\/[A-Za-z_][\w.]*\/[A-Za-z_]\w*$/;
const NAME = /^[a-z0-9][a-z0-9_.-]*$/;
/**
 * Anything but what a gRPC metadata value may hold (printable ASCII, space
 * and tab): control characters, and characters past U+007E, which an HTTP/2
 * header cannot carry (one past U+00FF made the upstream's header encoder
 * throw, which read as the core failing and took it out of balancing).
 */
const NOT_HEADER_TEXT = /[^\t\x20-\x7e]/;

/** Parses the first frame; `undefined` if it is not a valid header. */
export function parseCallHeader(text: string): BridgeCallHeader | undefined {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof value !== "object" || value === null) return undefined;
  const { path, metadata, timeoutMs } = value as Record<string, unknown>;
  if (
    typeof path !== "string" || path.length > MAX_PATH_LENGTH ||
    !PATH.test(path)
  ) {
    return undefined;
  }
  if (
    timeoutMs !== undefined && !(typeof timeoutMs === "number" && timeoutMs > 0)
  ) {
    return undefined;
  }
  if (metadata !== undefined) {
    if (
      typeof metadata !== "object" || metadata === null ||
      Array.isArray(metadata)
    ) {
      return undefined;
    }
    if (Object.values(metadata).some((v) => typeof v !== "string")) {
      return undefined;
    }
  }
  return {
    path,
    metadata: metadata as Record<string, string> | undefined,
    timeoutMs: timeoutMs as number | undefined,
  };
}

/** Spaces and tabs at either end of a value (HTTP's optional whitespace). */
const EDGE_SPACE = /^[\t ]+|[\t ]+$/g;

/**
 * Keeps the allow-listed, well-formed entries, with lower-cased names and
 * the values trimmed of spaces and tabs at either end, as fetch() trims a
 * request header's (RFC 9110 §5.5: they are not part of the value). Sent
 * on untrimmed, the core's HTTP/2 resets the stream (RFC 9113 §8.2.1), so a
 * padded `authorization` failed INTERNAL on the bridge alone.
 */
export function filterMetadata(
  metadata: Record<string, string> | undefined,
  allowed: ReadonlySet<string>,
): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [rawName, value] of Object.entries(metadata ?? {})) {
    const name = rawName.toLowerCase();
    if (!NAME.test(name) || name.startsWith("grpc-")) continue;
    if (!allowed.has(name) || NOT_HEADER_TEXT.test(value)) continue;
    out[name] = value.replace(EDGE_SPACE, "");
  }
  return out;
}
