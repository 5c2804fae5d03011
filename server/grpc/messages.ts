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
import { allocFramed, frameMessage, PREFIX_BYTES } from "./framing.ts";
import { ChatError } from "../rooms/errors.ts";
import { writeEnvelopeHeader } from "../../protocol/envelope.ts";
import type { ChatPost } from "./post_decoder.ts";

/** Encodes a chat message (plain fields; `create()` fills the rest). */
export function encodeMessage(
  fields: Partial<Omit<Message, "$typeName">>,
): Uint8Array {
  return toBinary(MessageSchema, create(MessageSchema, fields));
}

const utf8 = new TextEncoder();

/**
 * A message (CHAT unless `type` says otherwise), encoded straight into a
 * gRPC-framed buffer: the same bytes as `frameMessage(encodeMessage({...}))`
 * without the reflective encoder, a growing writer or a copy into the frame.
 * The hot path of every post and every echo.
 */
export function frameChatMessage(
  id: string,
  user: string,
  content: string,
  room: string,
  nowMs: number,
  type: MessageType = MessageType.CHAT,
  idempotencyKey = "",
): Buffer {
  const seconds = Math.floor(nowMs / 1000);
  if (seconds < 0) {
    return frameMessage(
      writerMessage(id, user, content, room, nowMs, type, idempotencyKey),
    );
  }
  const nanos = (nowMs - seconds * 1000) * 1_000_000;
  const idLen = utf8Length(id);
  const userLen = utf8Length(user);
  const contentLen = utf8Length(content);
  const roomLen = utf8Length(room);
  const tsLen = timestampSize(seconds, nanos);
  const keyLen = idempotencyKey === "" ? 0 : utf8Length(idempotencyKey);
  const size = fieldSize(idLen) + fieldSize(userLen) + fieldSize(contentLen) +
    fieldSize(roomLen) + 1 + varintSize(tsLen) + tsLen +
    (type !== MessageType.CHAT ? 1 + varintSize(type) : 0) + fieldSize(keyLen);
  const out = allocFramed(size);
  let at = PREFIX_BYTES;
  at = writeString(out, at, 0x0a, id, idLen);
  at = writeString(out, at, 0x12, user, userLen);
  at = writeString(out, at, 0x1a, content, contentLen);
  at = writeString(out, at, 0x22, room, roomLen);
  at = writeTimestampField(out, at, 0x2a, seconds, nanos, tsLen);
  // CHAT is 0, the default: proto3 leaves it out.
  if (type !== MessageType.CHAT) {
    out[at++] = 0x30;
    at = writeVarint(out, at, type);
  }
  // idempotency_key = 9, after the fields above in field order.
  if (keyLen > 0) writeString(out, at, 0x4a, idempotencyKey, keyLen);
  return out;
}

/**
 * A stored message as subscribers receive it: gRPC-framed, with its
 * `offset = 7` and `epoch = 8` appended after the stored body. Protobuf
 * allows fields in any order, and for a field that appears twice (a client
 * that sent its own offset) the last one wins, so the appended pair is what
 * every decoder reads. Built once per message and shared by all subscribers.
 */
export function frameStored(
  body: Uint8Array,
  offset: number,
  epoch: string,
): Buffer {
  const epochLen = utf8Length(epoch);
  const size = body.byteLength + (offset !== 0 ? 1 + varintSize(offset) : 0) +
    fieldSize(epochLen);
  const out = allocFramed(size);
  out.set(body, PREFIX_BYTES);
  let at = PREFIX_BYTES + body.byteLength;
  if (offset !== 0) {
    out[at++] = 0x38;
    at = writeVarint(out, at, offset);
  }
  writeString(out, at, 0x42, epoch, epochLen);
  return out;
}

/**
 * Rejects a message that would be too large to broadcast once its offset
 * and epoch are added (RESOURCE_EXHAUSTED, the sender's error).
 */
export function checkBroadcastSize(body: Uint8Array, max: number): void {
  const size = body.byteLength + STORED_TAIL_BYTES;
  if (size > max) {
    throw new ChatError(
      "resource_exhausted",
      `message too large to broadcast: ${size} bytes with its offset and epoch, limit ${max}`,
    );
  }
}

/**
 * Rejects a Chat message whose echo would be over the send limit
 * (RESOURCE_EXHAUSTED, the sender's error), before it is stored: the echo
 * adds its prefixes ("echo_", "Echo: ") and a timestamp, and a message
 * stored and broadcast whose echo then failed the send limit ended the call
 * RESOURCE_EXHAUSTED ("Sent message larger than max") with the message
 * posted, and every retry with its key failed the same way.
 */
export function checkEchoSize(post: ChatPost, max: number): void {
  const size = fieldSize(ECHO_ID.length + post.idEnd - post.idAt) +
    fieldSize(ECHO_USER.length) +
    fieldSize(ECHO_CONTENT.length + post.contentEnd - post.contentAt) +
    fieldSize(post.roomEnd - post.roomAt) + ECHO_TAIL_MAX_BYTES;
  if (size > max) {
    throw new ChatError(
      "resource_exhausted",
      `message too large to echo: ${size} bytes as its echo, limit ${max}`,
    );
  }
}

/**
 * The most an echo's timestamp (tag, length, seconds and nanos, each a tag
 * and at most 5 varint bytes) and its SYSTEM type add.
 */
const ECHO_TAIL_MAX_BYTES = 2 + 6 + 6 + 2;

/** The most that {@linkcode frameStored} adds to a body with a 16-character epoch. */
export const STORED_TAIL_BYTES = 1 + 8 + 1 + 1 + 16;

/**
 * `SendMessageResponse{message_id = 1, timestamp = 2, offset = 3}`, the
 * same bytes as protobuf-es's `toBinary()`, written at its exact size.
 */
export function encodeSendResponse(
  id: string,
  nowMs: number,
  offset = 0,
): Uint8Array {
  return sendResponse(id, nowMs, offset, false);
}

/**
 * The same response with its gRPC prefix, written into one buffer: the
 * same bytes as `frameMessage(encodeSendResponse(...))`, without the
 * second buffer and the copy (the direct unary path's answer).
 */
export function frameSendResponse(
  id: string,
  nowMs: number,
  offset = 0,
): Buffer {
  return sendResponse(id, nowMs, offset, true) as Buffer;
}

function sendResponse(
  id: string,
  nowMs: number,
  offset: number,
  framed: boolean,
): Uint8Array {
  const seconds = Math.floor(nowMs / 1000);
  if (seconds < 0) {
    const w = new BinaryWriter();
    if (id !== "") w.tag(1, 2).string(id);
    writeTimestamp(w, 2, nowMs);
    if (offset !== 0) w.tag(3, 0).uint64(offset);
    return framed ? frameMessage(w.finish()) : w.finish();
  }
  const nanos = (nowMs - seconds * 1000) * 1_000_000;
  const idLen = utf8Length(id);
  const tsLen = timestampSize(seconds, nanos);
  const size = fieldSize(idLen) + 1 + varintSize(tsLen) + tsLen +
    (offset !== 0 ? 1 + varintSize(offset) : 0);
  const out = framed ? allocFramed(size) : new Uint8Array(size);
  let at = writeString(out, framed ? PREFIX_BYTES : 0, 0x0a, id, idLen);
  at = writeTimestampField(out, at, 0x12, seconds, nanos, tsLen);
  if (offset !== 0) {
    out[at++] = 0x18;
    writeVarint(out, at, offset);
  }
  return out;
}

/** Bytes of a Timestamp's body (seconds = 1, nanos = 2; zeros left out). */
function timestampSize(seconds: number, nanos: number): number {
  return (seconds !== 0 ? 1 + varintSize(seconds) : 0) +
    (nanos !== 0 ? 1 + varintSize(nanos) : 0);
}

function writeTimestampField(
  out: Uint8Array,
  at: number,
  tag: number,
  seconds: number,
  nanos: number,
  size: number,
): number {
  out[at++] = tag;
  at = writeVarint(out, at, size);
  if (seconds !== 0) {
    out[at++] = 0x08;
    at = writeVarint(out, at, seconds);
  }
  if (nanos !== 0) {
    out[at++] = 0x10;
    at = writeVarint(out, at, nanos);
  }
  return at;
}

/** The same message through protobuf-es's BinaryWriter (negative times). */
function writerMessage(
  id: string,
  user: string,
  content: string,
  room: string,
  nowMs: number,
  type: MessageType,
  idempotencyKey: string,
): Uint8Array {
  const w = new BinaryWriter();
  if (id !== "") w.tag(1, 2).string(id);
  if (user !== "") w.tag(2, 2).string(user);
  if (content !== "") w.tag(3, 2).string(content);
  if (room !== "") w.tag(4, 2).string(room);
  writeTimestamp(w, 5, nowMs);
  if (type !== MessageType.CHAT) w.tag(6, 0).int32(type);
  if (idempotencyKey !== "") w.tag(9, 2).string(idempotencyKey);
  return w.finish();
}

/** Bytes of a string field (tag, length, bytes); 0 for "" (proto3 omits it). */
function fieldSize(len: number): number {
  return len === 0 ? 0 : 1 + varintSize(len) + len;
}

function varintSize(n: number): number {
  let size = 1;
  while (n >= 0x80) {
    n = Math.floor(n / 0x80);
    size++;
  }
  return size;
}

/** Writes a non-negative integer (up to 2^53) as a varint. */
function writeVarint(out: Uint8Array, at: number, n: number): number {
  if (n <= 0xffff_ffff) {
    // Integer operations (a timestamp's seconds and nanos, any length).
    while (n > 0x7f) {
      out[at++] = (n & 0x7f) | 0x80;
      n >>>= 7;
    }
    out[at++] = n;
    return at;
  }
  while (n >= 0x80) {
    out[at++] = (n % 0x80) | 0x80;
    n = Math.floor(n / 0x80);
  }
  out[at++] = n;
  return at;
}

function writeString(
  out: Uint8Array,
  at: number,
  tag: number,
  s: string,
  len: number,
): number {
  if (len === 0) return at;
  out[at++] = tag;
  at = writeVarint(out, at, len);
  if (len === s.length) {
    for (let i = 0; i < len; i++) out[at + i] = s.charCodeAt(i);
  } else {
    utf8.encodeInto(s, out.subarray(at, at + len));
  }
  return at + len;
}

/**
 * The UTF-8 length of `s` as TextEncoder encodes it (a lone surrogate
 * becomes U+FFFD, 3 bytes).
 */
function utf8Length(s: string): number {
  let n = s.length;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) continue;
    if (c < 0x800) {
      n += 1;
    } else if (
      c >= 0xd800 && c <= 0xdbff && i + 1 < s.length &&
      (s.charCodeAt(i + 1) & 0xfc00) === 0xdc00
    ) {
      n += 2; // a pair: two units, four bytes
      i++;
    } else {
      n += 2;
    }
  }
  return n;
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

/**
 * The first message of a subscription; `offset` is the room's last offset
 * when it began and `epoch` the room's epoch (docs/history.md).
 */
export function welcomeMessage(
  room: string,
  user: string,
  nowMs = Date.now(),
  position: { offset: number; epoch: string } = { offset: 0, epoch: "" },
): Uint8Array {
  return encodeMessage({
    id: "system",
    user: "System",
    content: `Welcome to room ${room}, ${user}!`,
    room,
    timestamp: timestampFromMs(nowMs),
    type: MessageType.SYSTEM,
    offset: BigInt(position.offset),
    epoch: position.epoch,
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

/**
 * The framed echo of a Chat message (see {@linkcode echoMessage}): the
 * bytes of `frameChatMessage("echo_" + id, "Server", "Echo: " + content,
 * room, nowMs, SYSTEM)`, in a new buffer. The chat handler writes echoes in
 * place instead (`planEcho` and `writeEcho`).
 */
export function frameEchoMessage(post: ChatPost, nowMs = Date.now()): Buffer {
  const out = Buffer.allocUnsafe(planEcho(post, nowMs));
  writeEcho(out, 0);
  return out;
}

/**
 * The echo measured by the last {@linkcode planEcho}, for
 * {@linkcode writeEcho}: one at a time, reused (nothing is allocated per
 * echo). `slow` holds a whole framed echo built the general way (a negative
 * time).
 */
const plan = {
  post: undefined as ChatPost | undefined,
  size: 0,
  slow: undefined as Buffer | undefined,
};

/**
 * The echo's last fields, the timestamp and the SYSTEM type, for `tailMs`:
 * every echo of a turn has the same time, so they are encoded once per
 * millisecond, not per echo.
 */
const tail = new Uint8Array(32);
let tailLen = 0;
let tailMs = NaN;

function planTail(nowMs: number, seconds: number): void {
  if (nowMs === tailMs) return;
  const nanos = (nowMs - seconds * 1000) * 1_000_000;
  const tsLen = timestampSize(seconds, nanos);
  let at = writeTimestampField(tail, 0, 0x2a, seconds, nanos, tsLen);
  tail[at++] = 0x30;
  tailLen = writeVarint(tail, at, MessageType.SYSTEM);
  tailMs = nowMs;
}

const utf8Decoder = new TextDecoder("utf-8", { ignoreBOM: true });

/**
 * Measures the echo of `post` at `nowMs` (see {@linkcode frameEchoMessage})
 * and returns its framed size; the next {@linkcode writeEcho} writes exactly
 * those bytes. The id, content and room are copied from the bytes the
 * message came in (checked UTF-8: what encoding the decoded strings would
 * write), and the prefixes are ASCII, so the UTF-8 of a joined string is
 * the prefix's bytes followed by the original's: no string is built.
 */
export function planEcho(post: ChatPost, nowMs: number): number {
  const seconds = Math.floor(nowMs / 1000);
  if (seconds < 0) {
    const text = (at: number, end: number) =>
      utf8Decoder.decode(post.body.subarray(at, end));
    const slow = frameChatMessage(
      ECHO_ID + text(post.idAt, post.idEnd),
      ECHO_USER,
      ECHO_CONTENT + text(post.contentAt, post.contentEnd),
      text(post.roomAt, post.roomEnd),
      nowMs,
      MessageType.SYSTEM,
    );
    plan.slow = slow;
    return slow.length;
  }
  plan.slow = undefined;
  planTail(nowMs, seconds);
  plan.post = post;
  plan.size = fieldSize(ECHO_ID.length + post.idEnd - post.idAt) +
    fieldSize(ECHO_USER.length) +
    fieldSize(ECHO_CONTENT.length + post.contentEnd - post.contentAt) +
    fieldSize(post.roomEnd - post.roomAt) + tailLen;
  return PREFIX_BYTES + plan.size;
}

/** Writes the echo measured by the last {@linkcode planEcho} at `out[at..]`. */
export function writeEcho(out: Uint8Array, at: number): void {
  const slow = plan.slow;
  if (slow !== undefined) {
    out.set(slow, at);
    plan.slow = undefined;
    return;
  }
  const post = plan.post!;
  const body = post.body;
  writeEnvelopeHeader(out, at, 0, plan.size);
  at += PREFIX_BYTES;
  at = writeJoined(out, at, 0x0a, ECHO_ID, body, post.idAt, post.idEnd);
  at = writeString(out, at, 0x12, ECHO_USER, ECHO_USER.length);
  at = writeJoined(
    out,
    at,
    0x1a,
    ECHO_CONTENT,
    body,
    post.contentAt,
    post.contentEnd,
  );
  at = writeJoined(out, at, 0x22, "", body, post.roomAt, post.roomEnd);
  for (let i = 0; i < tailLen; i++) out[at + i] = tail[i];
  plan.post = undefined; // the message can be collected
}

const ECHO_ID = "echo_";
const ECHO_USER = "Server";
const ECHO_CONTENT = "Echo: ";

/**
 * A string field whose value is the ASCII `prefix` followed by the bytes
 * `body[from, to)`; not written when both are empty (proto3 leaves an empty
 * string out).
 */
function writeJoined(
  out: Uint8Array,
  at: number,
  tag: number,
  prefix: string,
  body: Uint8Array,
  from: number,
  to: number,
): number {
  const len = prefix.length + to - from;
  if (len === 0) return at;
  out[at++] = tag;
  at = writeVarint(out, at, len);
  for (let i = 0; i < prefix.length; i++) out[at++] = prefix.charCodeAt(i);
  if (to - from > 64) {
    out.set(body.subarray(from, to), at);
    return at + to - from;
  }
  for (let i = from; i < to; i++) out[at++] = body[i];
  return at;
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
