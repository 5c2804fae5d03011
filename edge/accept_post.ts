/**
 * The `Accept-Post` header of the edge's 415 answers: the request content
 * types an RPC path takes, so a client that sent another one can tell what
 * would have been accepted (RFC 9110 §15.5.16; connect-go sends it too).
 * Only error answers carry it: no call that succeeds pays for it.
 *
 * @module
 */

/** gRPC-Web, binary and text: every method. */
const GRPC_WEB = [
  "application/grpc-web",
  "application/grpc-web+proto",
  "application/grpc-web-text",
  "application/grpc-web-text+proto",
];

/** Connect unary (POST). */
const CONNECT_UNARY = ["application/json", "application/proto"];

/** Connect streaming (client, server, bidi). */
const CONNECT_STREAM = [
  "application/connect+json",
  "application/connect+proto",
];

/** Every RPC content type the edge serves, for a path of no known method. */
export const ACCEPT_POST_ANY: string = [
  ...GRPC_WEB,
  ...CONNECT_UNARY,
  ...CONNECT_STREAM,
].join(", ");

/** The gRPC-Web content types. */
export const ACCEPT_POST_GRPC_WEB: string = GRPC_WEB.join(", ");

/** What a method of this kind takes: gRPC-Web and its Connect form. */
export function acceptPostFor(unary: boolean): string {
  return [...GRPC_WEB, ...(unary ? CONNECT_UNARY : CONNECT_STREAM)].join(
    ", ",
  );
}
