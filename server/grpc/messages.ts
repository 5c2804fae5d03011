/**
 * The server's own chat messages, built and encoded once.
 *
 * Every function returns protobuf bytes ready for `call.write()`: the
 * service definition passes `Uint8Array` through, so a broadcast encoded
 * here is the very buffer every subscriber's stream writes.
 */
import { create, toBinary } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { type Message, MessageSchema, MessageType } from "../../gen/chat_pb.ts";

/** Encodes a chat message (plain fields; `create()` fills the rest). */
export function encodeMessage(
  fields: Partial<Omit<Message, "$typeName">>,
): Uint8Array {
  return toBinary(MessageSchema, create(MessageSchema, fields));
}

export function welcomeMessage(
  room: string,
  user: string,
  nowMs = Date.now(),
): Uint8Array {
  return encodeMessage({
    id: "system",
    user: "System",
    content: `Welcome to room ${room}, ${user}!`,
    room,
    timestamp: timestampFromMs(nowMs),
    type: MessageType.SYSTEM,
  });
}

export function presenceMessage(
  room: string,
  user: string,
  type: MessageType.JOIN | MessageType.LEAVE,
  nowMs = Date.now(),
): Uint8Array {
  const verb = type === MessageType.JOIN ? "joined" : "left";
  return encodeMessage({
    id: `${verb}_${nowMs}`,
    user,
    content: `${user} ${verb} the room`,
    room,
    timestamp: timestampFromMs(nowMs),
    type,
  });
}

export function echoMessage(
  original: Pick<Message, "id" | "content" | "room">,
  nowMs = Date.now(),
): Uint8Array {
  return encodeMessage({
    id: `echo_${original.id}`,
    user: "Server",
    content: `Echo: ${original.content}`,
    room: original.room,
    timestamp: timestampFromMs(nowMs),
    type: MessageType.SYSTEM,
  });
}

export function aliveMessage(nowMs = Date.now()): Uint8Array {
  return encodeMessage({
    id: `server_${Math.floor(nowMs / 1000)}`,
    user: "Server",
    content: "Server is alive!",
    timestamp: timestampFromMs(nowMs),
    type: MessageType.SYSTEM,
  });
}
