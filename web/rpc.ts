/**
 * The connect-web client for unary and server-streaming calls to the edge.
 *
 * gRPC-Web over fetch carries these two kinds well (the response streams, the
 * request does not need to), and it is the same protocol the seed's Envoy set-up
 * spoke, so the page exercises the edge's gRPC-Web path for real. Over
 * HTTP/1.x the server streams take the WebSocket bridge instead
 * (`bridge_transport.ts` says why); {@linkcode streamsOver} picks.
 *
 * @module
 */
import { type Client, createClient } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { ChatService } from "../gen/chat_pb.ts";
import { authMetadata } from "./auth.ts";
import { createBridgeStreamTransport } from "./bridge_transport.ts";

/** A typed ChatService client. */
export type ChatClient = Client<typeof ChatService>;

/** How the client carries its server streams. */
export type StreamRoute = "grpc-web" | "websocket";

/**
 * Creates a client that talks binary gRPC-Web to `baseUrl` (the page's
 * origin); each call carries `authorization` when `token()` is not empty.
 * With `streams` "websocket", server streams go over the bridge at
 * `bridgeUrl` instead.
 */
export function createChatClient(
  baseUrl: string,
  token: () => string = () => "",
  streams: StreamRoute = "grpc-web",
  bridgeUrl = "",
): ChatClient {
  const grpcWeb = createGrpcWebTransport({
    baseUrl,
    useBinaryFormat: true,
    interceptors: [(next) => (req) => {
      for (const [k, v] of Object.entries(authMetadata(token()))) {
        req.header.set(k, v);
      }
      return next(req);
    }],
  });
  return createClient(
    ChatService,
    streams === "websocket"
      ? createBridgeStreamTransport(
        bridgeUrl,
        grpcWeb,
        () => authMetadata(token()),
      )
      : grpcWeb,
  );
}

/**
 * The route for a page: `?streams=grpc-web` or `?streams=websocket` when
 * asked for; else gRPC-Web when the page came over HTTP/2 or HTTP/3 (one
 * connection carries every stream), the bridge otherwise (HTTP/1.x, or not
 * known).
 */
export function streamsOver(
  asked: string | null,
  protocol: string | undefined,
): StreamRoute {
  if (asked === "grpc-web" || asked === "websocket") return asked;
  return protocol === "h2" || protocol === "h3" ? "grpc-web" : "websocket";
}
