/**
 * The connect-web client for unary and server-streaming calls to the edge.
 *
 * gRPC-Web over fetch carries these two kinds well (the response streams, the
 * request does not need to), and it is the same protocol the seed's Envoy set-up
 * spoke, so the page exercises the edge's gRPC-Web path for real.
 *
 * @module
 */
import { type Client, createClient } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { ChatService } from "../gen/chat_pb.ts";
import { authMetadata } from "./auth.ts";

/** A typed ChatService client. */
export type ChatClient = Client<typeof ChatService>;

/**
 * Creates a client that talks binary gRPC-Web to `baseUrl` (the page's
 * origin); each call carries `authorization` when `token()` is not empty.
 */
export function createChatClient(
  baseUrl: string,
  token: () => string = () => "",
): ChatClient {
  return createClient(
    ChatService,
    createGrpcWebTransport({
      baseUrl,
      useBinaryFormat: true,
      interceptors: [(next) => (req) => {
        for (const [k, v] of Object.entries(authMetadata(token()))) {
          req.header.set(k, v);
        }
        return next(req);
      }],
    }),
  );
}
