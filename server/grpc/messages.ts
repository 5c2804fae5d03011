/**
 * The server's own chat messages, built and encoded once.
 *
 * Every function returns protobuf bytes ready for `call.write()`: the
 * service definition passes `Uint8Array` through, so a broadcast encoded
 * here is the very buffer every subscriber's stream writes.
 */
import { Buffer } from "node:buffer";
import { create, toBinary } from "@bufbuild/protobuf";
import { BinaryWriter } from "@bufbuild/protobuf/wire";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { type Message, MessageSchema, MessageType } from "../../gen/chat_pb.ts";

/** Encodes a chat message (plain fields; `create()` fills the rest). */
export function encodeMessage(
  fields: Partial<Omit<Message, "$typeName">>,
): Uint8Array {
  return toBinary(MessageSchema, create(MessageSchema, fields));
}

const PREFIX = new Uint8Array(5);

/**
 * A message (CHAT unless `type` says otherwise), encoded straight into a
 * gRPC-framed buffer: the same bytes as `frameMessage(encodeMessage({...}))`
 * without the reflective encoder or the copy into the frame. The hot path of
 * every post and every echo.
 */
export function frameChatMessage(
  id: string,
  user: string,
  content: string,
  room: string,
  nowMs: number,
  type: MessageType = MessageType.CHAT,
): Buffer {
  const w = new BinaryWriter();
  w.raw(PREFIX);
  if (id !== "") w.tag(1, 2).string(id);
  if (user !== "") w.tag(2, 2).string(user);
  if (content !== "") w.tag(3, 2).string(content);
  if (room !== "") w.tag(4, 2).string(room);
  writeTimestamp(w, 5, nowMs);
  // CHAT is 0, the default: proto3 leaves it out.
  if (type !== MessageType.CHAT) w.tag(6, 0).int32(type);
  const framed = w.finish();
  new DataView(framed.buffer, framed.byteOffset).setUint32(
    1,
    framed.byteLength - 5,
  );
  return Buffer.from(framed.buffer, framed.byteOffset, framed.byteLength);
}

/** Writes a `google.protobuf.Timestamp` field of `nowMs` as protobuf-es would. */
export function writeTimestamp(
  w: BinaryWriter,
  field: number,
  nowMs: number,
): void {
  const seconds = Math.floor(nowMs / 1000);
  const nanos = (nowMs - seconds * 1000) * 1_000_000;
  w.tag(field, 2).fork();
  if (seconds !== 0) w.tag(1, 0).int64(seconds);
  if (nanos !== 0) w.tag(2, 0).int32(nanos);
  w.join();
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

/** The framed echo of a Chat message (see {@linkcode echoMessage}). */
export function frameEchoMessage(
  original: Pick<Message, "id" | "content" | "room">,
  nowMs = Date.now(),
): Buffer {
  return frameChatMessage(
    `echo_${original.id}`,
    "Server",
    `Echo: ${original.content}`,
    original.room,
    nowMs,
    MessageType.SYSTEM,
  );
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
