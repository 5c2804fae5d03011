/**
 * Byte-level framing for gRPC, gRPC-Web (binary and text) and Connect.
 *
 * Pure functions and small parsers with no HTTP, Hono or gRPC imports, so the
 * edge handlers, the WebSocket bridge and the tests share one implementation.
 *
 * @module
 */
export * from "./errors.ts";
export * from "./envelope.ts";
export * from "./grpc_web_trailer.ts";
export * from "./base64.ts";
export * from "./connect_end_stream.ts";
export * from "./grpc_headers.ts";
export * from "./status.ts";
