/**
 * The answer to a native gRPC client (content-type `application/grpc`)
 * that reached the edge: a trailers-only gRPC response, UNIMPLEMENTED, whose
 * message names the core's address.
 *
 * A gRPC client reads status from trailers; an HTTP error with a text body
 * is what made grpc-js report a 1.6 GB message and grpcio UNKNOWN. A
 * trailers-only response is one header block with grpc-status in it, so it
 * needs no HTTP trailers, which Deno.serve responses cannot carry. It works
 * over HTTP/2 (h2c with prior knowledge, or TLS with ALPN h2), which
 * Deno.serve speaks.
 *
 * @module
 */
import { Code, encodeGrpcMessage } from "../protocol/mod.ts";

/** True for `application/grpc` and `application/grpc+<codec>` media types. */
export function isNativeGrpc(mediaType: string): boolean {
  return mediaType === "application/grpc" ||
    mediaType.startsWith("application/grpc+");
}

/** Request bytes read before answering, and how long to wait for them. */
const DRAIN_BYTES = 64 * 1024;
const DRAIN_MS = 50;

/**
 * Reads what the client sends of a small request (its END_STREAM) before
 * the answer goes out. Answering first makes Deno.serve reset the stream
 * whose body was not read, and curl, mid-upload, reports that reset as a
 * failure (exit 92) instead of the answer. A body that is larger or slower
 * than the bound (a streaming client) is answered anyway.
 */
async function drainSmall(request: Request): Promise<void> {
  const reader = request.body?.getReader();
  if (reader === undefined) return;
  let read = 0;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<undefined>((r) =>
    timer = setTimeout(() => r(undefined), DRAIN_MS)
  );
  try {
    while (read <= DRAIN_BYTES) {
      const next = await Promise.race([reader.read(), timeout]);
      if (next === undefined) break;
      if (next.done) return;
      read += next.value.byteLength;
    }
    // Larger or slower than the bound: stop reading (a pending read settles).
    reader.cancel().catch(() => {});
  } catch {
    // A client that reset its request still gets the answer if it listens.
  } finally {
    clearTimeout(timer);
  }
}

/** Creates the answer for a core at `upstream` (an http: or https: URL). */
export function nativeGrpcAnswer(
  upstream: string,
): (request: Request) => Promise<Response> {
  const message = encodeGrpcMessage(
    `this is a gRPC-Web/Connect gateway; call the core directly at ${upstream}`,
  );
  return async (request) => {
    await drainSmall(request);
    return new Response(null, {
      status: 200,
      headers: {
        "content-type": "application/grpc",
        "grpc-status": String(Code.UNIMPLEMENTED),
        "grpc-message": message,
      },
    });
  };
}
