/**
 * The server's view of `chat.ChatService`: the shared definition, except
 * that streamed `Message` requests keep their wire bytes.
 *
 * UploadMessages and Chat broadcast what the client sent; keeping the bytes
 * lets the room fan out the client's own encoding (unknown fields included)
 * instead of encoding the decoded message again.
 */
import type { ServiceDefinition } from "@grpc/grpc-js";
import type { Buffer } from "node:buffer";
import { chatServiceDefinition } from "../../rpc/chat_service.ts";
import { type ChatPost, decodeChatPost } from "./post_decoder.ts";

/** A streamed request: the fields the server reads and the bytes it came in. */
export interface InboundMessage {
  readonly message: ChatPost;
  readonly bytes: Uint8Array;
}

function decodeInbound(bytes: Buffer): InboundMessage {
  return { message: decodeChatPost(bytes), bytes };
}

/** A streamed request as the handlers' message reader wants it (fallback path). */
export function inboundParts(
  value: unknown,
): { value: InboundMessage["message"]; bytes: Uint8Array } {
  const inbound = value as InboundMessage;
  return { value: inbound.message, bytes: inbound.bytes };
}

export const serverDefinition: ServiceDefinition = {
  ...chatServiceDefinition,
  UploadMessages: {
    ...chatServiceDefinition.UploadMessages,
    requestDeserialize: decodeInbound,
  },
  Chat: { ...chatServiceDefinition.Chat, requestDeserialize: decodeInbound },
};
