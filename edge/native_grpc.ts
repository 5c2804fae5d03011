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

/** Creates the answer for a core at `upstream` (an http: or https: URL). */
export function nativeGrpcAnswer(upstream: string): () => Response {
  const message = encodeGrpcMessage(
    `this is a gRPC-Web/Connect gateway; call the core directly at ${upstream}`,
  );
  return () =>
    new Response(null, {
      status: 200,
      headers: {
        "content-type": "application/grpc",
        "grpc-status": String(Code.UNIMPLEMENTED),
        "grpc-message": message,
      },
    });
}
