/**
 * Value formats of the gRPC headers the edge must translate: `grpc-timeout`
 * and the percent-encoded `grpc-message`.
 *
 * Both formats come from the gRPC over HTTP/2 spec; getting them wrong shows
 * up only with long deadlines or non-ASCII error messages, so they live here
 * with their own tests rather than inline in a handler.
 *
 * @module
 */

/** ms per unit of a `grpc-timeout`, by the unit letter's char code. */
function unitMs(code: number): number {
  switch (code) {
    case 0x48: // H
      return 3_600_000;
    case 0x4d: // M
      return 60_000;
    case 0x53: // S
      return 1000;
    case 0x6d: // m
      return 1;
    case 0x75: // u
      return 0.001;
    case 0x6e: // n
      return 0.000001;
    default:
      return 0;
  }
}

/**
 * Parses a `grpc-timeout` value ("1S", "250m", at most 8 digits) to ms.
 *
 * Returns undefined for an absent or malformed value; sub-millisecond
 * timeouts round up to 1 ms so they still expire rather than meaning "none".
 * A loop over the characters rather than a RegExp: it runs on every call
 * of the core and of the edge (a RegExp exec was ~1% of a unary call's CPU).
 */
export function parseGrpcTimeout(
  value: string | null | undefined,
): number | undefined {
  if (!value) return undefined;
  const last = value.length - 1;
  if (last < 1 || last > 8) return undefined;
  const unit = unitMs(value.charCodeAt(last));
  if (unit === 0) return undefined;
  let digits = 0;
  for (let i = 0; i < last; i++) {
    const d = value.charCodeAt(i) - 0x30;
    if (d < 0 || d > 9) return undefined;
    digits = digits * 10 + d;
  }
  const ms = digits * unit;
  return ms > 0 && ms < 1 ? 1 : Math.ceil(ms);
}

/**
 * The longest delay a timer takes (setTimeout's signed 32-bit range, about
 * 24.8 days); a longer one overflows and fires at once. A `grpc-timeout`
 * of 597H or more, or a `connect-timeout-ms` of 2^31 or more, is beyond it.
 */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * A timeout to arm, or undefined when `ms` is beyond {@linkcode MAX_TIMER_MS}:
 * a deadline weeks away means "no practical deadline", not "now".
 */
export function practicalTimeout(ms: number | undefined): number | undefined {
  return ms !== undefined && ms > MAX_TIMER_MS ? undefined : ms;
}

/** Formats ms as a `grpc-timeout` value, choosing a unit that fits 8 digits. */
export function formatGrpcTimeout(ms: number): string {
  const whole = Math.max(0, Math.ceil(ms));
  if (whole < 1e8) return `${whole}m`;
  if (whole / 1000 < 1e8) return `${Math.ceil(whole / 1000)}S`;
  if (whole / 60_000 < 1e8) return `${Math.ceil(whole / 60_000)}M`;
  return `${Math.min(99_999_999, Math.ceil(whole / 3_600_000))}H`;
}

const encoder = new TextEncoder();

/**
 * Percent-encodes a `grpc-message`: printable ASCII except '%' stays,
 * everything else becomes %XX of its UTF-8 bytes.
 */
export function encodeGrpcMessage(message: string): string {
  let out = "";
  for (const byte of encoder.encode(message)) {
    out += byte >= 0x20 && byte <= 0x7e && byte !== 0x25
      ? String.fromCharCode(byte)
      : "%" + byte.toString(16).toUpperCase().padStart(2, "0");
  }
  return out;
}

/** Decodes a `grpc-message`; malformed escapes are kept as they are. */
export function decodeGrpcMessage(value: string): string {
  try {
    return decodeURIComponent(value);
  } catch {
    return value;
  }
}
