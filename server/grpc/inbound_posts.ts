/**
 * The checks every streamed message (UploadMessages, Chat) passes before it
 * is broadcast: who it claims to be from (under a token, its user and a
 * CHAT type), validation, the token's rooms and scope, the rate limit.
 *
 * A message sent with an empty `user` under a token is broadcast as the
 * token's user. Its bytes are what subscribers get, so the user field is
 * appended to them: a later occurrence of a proto3 string field wins when
 * parsing (the protobuf encoding spec, "Last One Wins"), which costs one
 * copy instead of decoding and encoding the whole message again. The copies
 * are cut from a shared slab ({@linkcode filledBytes}).
 */
import { BinaryWriter, WireType } from "@bufbuild/protobuf/wire";
import type { Caller } from "../auth/access.ts";
import { ChatError } from "../rooms/errors.ts";
import { validateIdempotencyKey, validatePostHead } from "../rooms/validate.ts";
import type { HandlerContext } from "./context.ts";
import type { PostHead } from "./post_decoder.ts";

/** `chat.Message.user`'s field number. */
const USER_FIELD = 2;
/** `chat.MessageType.CHAT`. */
const CHAT = 0;

/** One stream's message checker. */
export interface InboundPosts {
  /**
   * Checks one message; returns the bytes to broadcast (`bytes` itself, or
   * a copy with the user filled in). Throws a ChatError to end the call;
   * with `position` (1-based) the errors about the message itself name it.
   */
  check(message: PostHead, bytes: Uint8Array, position?: number): Uint8Array;
  /** Who the last message checked is posted as (under a token, its user). */
  readonly user: string;
}

/**
 * "message N: ", built only when an error needs it: an upload checks
 * hundreds of thousands of messages, and the string costs ~30 ns each.
 */
function at(position: number | undefined): string {
  return position === undefined ? "" : `message ${position}: `;
}

function validated(
  post: { user: string; room: string; hasContent: boolean },
  position: number | undefined,
): void {
  try {
    validatePostHead(post);
  } catch (err) {
    throw named(err, position);
  }
}

function validKey(key: string, position: number | undefined): void {
  try {
    validateIdempotencyKey(key);
  } catch (err) {
    throw named(err, position);
  }
}

/** A ChatError about the message at `position`, naming it. */
function named(err: unknown, position: number | undefined): unknown {
  if (position === undefined || !ChatError.is(err)) return err;
  return new ChatError(err.code, at(position) + err.message);
}

/** The slab the filled-in copies are cut from. */
const SLAB_BYTES = 64 * 1024;
/** Larger copies get a buffer of their own. */
const SLAB_LARGEST = 4 * 1024;
let slab = new Uint8Array(0);
let slabUsed = 0;

/**
 * `size` bytes for a filled-in copy. A `new Uint8Array` per message was
 * the largest single cost of an upload under a token (~0.75 µs of ~1.3 µs
 * more per message than without one, docs/perf-log.md: each is an
 * off-heap backing store, allocated and later swept), so copies are cut
 * from a 64 KiB slab instead. A slab is never rewound: when it is full a
 * new one starts, and the old one lives as long as a copy cut from it is
 * held. Copies are held as the received chunks they replace are: until the
 * store has them (it keeps its own copy) and the broadcast is framed.
 */
function filledBytes(size: number): Uint8Array {
  if (size > SLAB_LARGEST) return new Uint8Array(size);
  if (slabUsed + size > slab.length) {
    slab = new Uint8Array(SLAB_BYTES);
    slabUsed = 0;
  }
  const out = slab.subarray(slabUsed, slabUsed + size);
  slabUsed += size;
  return out;
}

/** Creates the checker for one stream of `caller`. */
export function inboundPosts(
  ctx: HandlerContext,
  caller: Caller,
): InboundPosts {
  let userField: Uint8Array | undefined;
  // The last user and room that passed validation with content: a stream
  // posts as one user to one room message after message (the decoder hands
  // back the same strings), and validation depends on nothing else.
  let validUser: string | undefined;
  let validRoom: string | undefined;
  const validate = (
    user: string,
    room: string,
    hasContent: boolean,
    position: number | undefined,
  ) => {
    if (user === validUser && room === validRoom && hasContent) return;
    validated({ user, room, hasContent }, position);
    validUser = user;
    validRoom = room;
  };
  let lastUser = "";
  return {
    get user() {
      return lastUser;
    },
    check(message, bytes, position) {
      // JOIN, LEAVE and SYSTEM lines are the server's, shown without a
      // user: under a token, posting one would speak for the server.
      if (caller.grant !== undefined && message.type !== CHAT) {
        const where = at(position);
        throw new ChatError(
          "permission_denied",
          `${where}only CHAT messages may be posted, not type ${message.type}`,
        );
      }
      const user = ctx.access.userOf(caller, message.user);
      lastUser = user;
      // Checked with the rest, before the rate limit counts the message.
      if (message.key !== "") validKey(message.key, position);
      if (user === message.user) {
        validate(user, message.room, message.hasContent, position);
        ctx.access.allowPost(caller, message.room);
        return bytes;
      }
      validate(user, message.room, message.hasContent, position);
      userField ??= new BinaryWriter().tag(USER_FIELD, WireType.LengthDelimited)
        .string(user).finish();
      // The request fit the limit; the broadcast with the user added may
      // not, and a subscriber's call would end on it. The sender's error.
      const size = bytes.byteLength + userField.byteLength;
      if (size > ctx.config.maxMessageBytes) {
        const where = at(position);
        throw new ChatError(
          "resource_exhausted",
          `${where}too large to broadcast: ${size} bytes with the user filled in, limit ${ctx.config.maxMessageBytes}`,
        );
      }
      ctx.access.allowPost(caller, message.room);
      const filled = filledBytes(size);
      filled.set(bytes);
      filled.set(userField, bytes.byteLength);
      return filled;
    },
  };
}
