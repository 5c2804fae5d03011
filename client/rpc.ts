/**
 * A typed grpc-js client for `chat.ChatService`, shared by the CLI clients and
 * the benchmark.
 *
 * grpc-js's generic client constructor types every method as `any`; going
 * through `Client.make*Request` with the descriptor-built serializers keeps the
 * request and response shapes checked. Requests may be plain objects or bytes
 * that are already encoded (the benchmark pre-encodes to keep the load
 * generator cheap).
 *
 * @module
 */
import * as grpc from "@grpc/grpc-js";
import { Buffer } from "node:buffer";
import type { MessageInitShape } from "@bufbuild/protobuf";
import {
  type Message,
  MessageSchema,
  type Metric,
  type MetricsRequestSchema,
  type PresenceRequestSchema,
  type PresenceResponse,
  type SendMessageRequestSchema,
  type SendMessageResponse,
  type SubscribeRequestSchema,
  type UploadResponse,
} from "../gen/chat_pb.ts";
import { chatServiceDefinition } from "../rpc/chat_service.ts";
import { type TransportConfig, UsageError } from "./config.ts";

/** A request or stream message: a plain object, or bytes already encoded. */
export type Req<Init> = Init | Uint8Array;
/** Plain-object shape of `chat.Message`. */
export type MessageInit = MessageInitShape<typeof MessageSchema>;

/** The client side of `chat.ChatService`, one method per RPC. */
export interface ChatClient {
  /** Unary `SendMessage`. */
  sendMessage(
    req: Req<MessageInitShape<typeof SendMessageRequestSchema>>,
    options?: grpc.CallOptions,
  ): Promise<SendMessageResponse>;
  /** Server-streaming `SubscribeMessages`. */
  subscribeMessages(
    req: Req<MessageInitShape<typeof SubscribeRequestSchema>>,
    options?: grpc.CallOptions,
  ): grpc.ClientReadableStream<Message>;
  /** Client-streaming `UploadMessages`; the callback gets the final count. */
  uploadMessages(
    callback: grpc.requestCallback<UploadResponse>,
    options?: grpc.CallOptions,
  ): grpc.ClientWritableStream<Req<MessageInit>>;
  /** Bidirectional `Chat`. */
  chat(
    options?: grpc.CallOptions,
  ): grpc.ClientDuplexStream<Req<MessageInit>, Message>;
  /** Server-streaming `StreamMetrics`. */
  streamMetrics(
    req: Req<MessageInitShape<typeof MetricsRequestSchema>>,
    options?: grpc.CallOptions,
  ): grpc.ClientReadableStream<Metric>;
  /** Unary `ListPresence`: who is in a room (servers with --presence). */
  listPresence(
    req: Req<MessageInitShape<typeof PresenceRequestSchema>>,
    options?: grpc.CallOptions,
  ): Promise<PresenceResponse>;
  /**
   * Closes the channel to new calls and cancels the streams still open on
   * it (grpc-js's own `close()` leaves them running, and the server keeps
   * their subscriptions): each ends with CANCELLED.
   */
  close(): void;
  /** The underlying grpc-js client, for waitForReady and channel state. */
  readonly raw: grpc.Client;
}

// deno-lint-ignore no-explicit-any
type AnyFn = (value: any) => any;
const def = chatServiceDefinition as unknown as Record<
  string,
  { path: string; requestSerialize: AnyFn; responseDeserialize: AnyFn }
>;

/**
 * Creates a client for `host:port`: plaintext (h2c) unless `credentials`
 * say TLS ({@linkcode channelCredentials}).
 *
 * Pass `{"grpc.use_local_subchannel_pool": 1}` (or any distinct option) in
 * `channelOptions` to get a connection of its own rather than one shared with
 * other clients to the same address. A `token` goes out as
 * `authorization: Bearer <token>` on every call: as plain metadata, because
 * grpc-js refuses call credentials on an insecure channel.
 */
export function createChatClient(
  addr: string,
  channelOptions: grpc.ChannelOptions = {},
  token = "",
  credentials: grpc.ChannelCredentials = grpc.credentials.createInsecure(),
): ChatClient {
  const metadata = () => {
    const md = new grpc.Metadata();
    if (token) md.set("authorization", `Bearer ${token}`);
    return md;
  };
  const raw = new grpc.Client(addr, credentials, channelOptions);
  const m = (name: string) => def[name];
  /** Streams not ended yet, cancelled by close(). */
  const open = new Set<grpc.Call>();
  const track = <C extends grpc.Call>(call: C): C => {
    open.add(call);
    call.on("status", () => open.delete(call));
    return call;
  };
  const unary = <Res>(
    name: string,
    req: unknown,
    options: grpc.CallOptions,
  ) => {
    const d = m(name);
    return new Promise<Res>((resolve, reject) => {
      raw.makeUnaryRequest(
        d.path,
        d.requestSerialize,
        d.responseDeserialize,
        req,
        metadata(),
        options,
        (err, res) => err ? reject(err) : resolve(res as Res),
      );
    });
  };
  const serverStream = <Res>(
    name: string,
    req: unknown,
    options: grpc.CallOptions,
  ) => {
    const d = m(name);
    return track(
      raw.makeServerStreamRequest(
        d.path,
        d.requestSerialize,
        d.responseDeserialize,
        req,
        metadata(),
        options,
      ),
    ) as grpc.ClientReadableStream<Res>;
  };
  return {
    raw,
    sendMessage: (req, options = {}) =>
      unary<SendMessageResponse>("SendMessage", req, options),
    listPresence: (req, options = {}) =>
      unary<PresenceResponse>("ListPresence", req, options),
    subscribeMessages: (req, options = {}) =>
      serverStream("SubscribeMessages", req, options),
    uploadMessages(callback, options = {}) {
      const d = m("UploadMessages");
      return track(
        raw.makeClientStreamRequest(
          d.path,
          d.requestSerialize,
          d.responseDeserialize,
          metadata(),
          options,
          callback,
        ),
      );
    },
    chat(options = {}) {
      const d = m("Chat");
      return track(
        raw.makeBidiStreamRequest(
          d.path,
          d.requestSerialize,
          d.responseDeserialize,
          metadata(),
          options,
        ),
      );
    },
    streamMetrics: (req, options = {}) =>
      serverStream("StreamMetrics", req, options),
    close() {
      for (const call of [...open]) call.cancel();
      open.clear();
      raw.close();
    },
  };
}

/**
 * The channel credentials `--tls` / `--tls-ca` ask for: h2c, TLS with the
 * system's roots, or TLS trusting only the PEM file `tlsCa`. Throws an
 * Error naming the flag and the file when it cannot be read.
 */
export async function channelCredentials(
  transport: TransportConfig,
): Promise<grpc.ChannelCredentials> {
  if (!transport.tls) return grpc.credentials.createInsecure();
  if (transport.tlsCa === "") return grpc.credentials.createSsl();
  let ca: Uint8Array;
  try {
    ca = await Deno.readFile(transport.tlsCa);
  } catch (err) {
    throw new Error(
      `cannot read --tls-ca ${transport.tlsCa}: ${(err as Error).message}`,
    );
  }
  return grpc.credentials.createSsl(Buffer.from(ca));
}

/** What a CLI needs from its parsed arguments to open its client. */
export interface CliConfig extends TransportConfig {
  help: boolean;
  addr: string;
  token: string;
}

/**
 * The start every CLI shares: `parse()` its arguments, print `usage` for
 * `--help`, read the TLS files, open the client. Returns the exit code
 * instead when there is nothing more to do: 0 after `--help`, 2 after bad
 * usage or an unreadable `--tls-ca` (one line on stderr naming `task`).
 */
export async function startCli<C extends CliConfig>(
  parse: () => C,
  usage: string,
  task: string,
): Promise<{ config: C; client: ChatClient } | number> {
  let config: C;
  try {
    config = parse();
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    console.error(`error: ${err.message} (see deno task ${task} --help)`);
    return 2;
  }
  if (config.help) {
    console.log(usage);
    return 0;
  }
  let credentials: grpc.ChannelCredentials;
  try {
    credentials = await channelCredentials(config);
  } catch (err) {
    console.error(`error: ${(err as Error).message}`);
    return 2;
  }
  const client = createChatClient(config.addr, {}, config.token, credentials);
  return { config, client };
}

/** A deadline `ms` from now, for `CallOptions.deadline`. */
export function deadlineIn(ms: number): Date {
  return new Date(Date.now() + ms);
}

/** Re-exported so callers need not import the schema for `MessageType`. */
export { MessageSchema };

/**
 * Resolves with a call's final status (OK, an error, or CANCELLED after
 * `cancel()`).
 *
 * grpc-js always emits `status` once, whereas `close` never comes for a duplex
 * stream whose write side stays open. Resolving a macrotask later lets data
 * still buffered in the stream be delivered first.
 */
export function callEnded(
  call: grpc.ClientUnaryCall,
): Promise<grpc.StatusObject> {
  return new Promise((resolve) => {
    call.once(
      "status",
      (s: grpc.StatusObject) => setTimeout(() => resolve(s), 0),
    );
  });
}
