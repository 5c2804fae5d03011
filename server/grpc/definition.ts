/**
 * The server's view of `chat.ChatService`: the shared definition, except
 * that streamed `Message` requests keep their wire bytes.
 *
 * UploadMessages and Chat broadcast what the client sent; keeping the bytes
 * lets the room fan out the client's own encoding (unknown fields included)
 * instead of encoding the decoded message again.
 */
import { fromBinary } from "@bufbuild/protobuf";
import type { ServiceDefinition } from "@grpc/grpc-js";
import type { Buffer } from "node:buffer";
import { type Message, MessageSchema } from "../../gen/chat_pb.ts";
import { chatServiceDefinition } from "../../rpc/chat_service.ts";

/** A streamed request: the decoded message and the bytes it came in. */
export interface InboundMessage {
  readonly message: Message;
  readonly bytes: Uint8Array;
}

function decodeInbound(bytes: Buffer): InboundMessage {
  return { message: fromBinary(MessageSchema, bytes), bytes };
}

export const serverDefinition: ServiceDefinition = {
  ...chatServiceDefinition,
  UploadMessages: {
    ...chatServiceDefinition.UploadMessages,
    requestDeserialize: decodeInbound,
  },
  Chat: { ...chatServiceDefinition.Chat, requestDeserialize: decodeInbound },
};
