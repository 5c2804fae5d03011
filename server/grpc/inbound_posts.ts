/**
 * The checks every streamed message (UploadMessages, Chat) passes before it
 * is broadcast: who it claims to be from (under a token, its user and a
 * CHAT type), validation, the token's rooms and scope, the rate limit.
 *
 * A message sent with an empty `user` under a token is broadcast as the
 * token's user. Its bytes are what subscribers get, so the user field is
 * appended to them: a later occurrence of a proto3 string field wins when
 * parsing (the protobuf encoding spec, "Last One Wins"), which costs one
 * copy instead of decoding and encoding the whole message again.
 */
import { BinaryWriter, WireType } from "@bufbuild/protobuf/wire";
import type { Caller } from "../auth/access.ts";
import { ChatError } from "../rooms/errors.ts";
import { validatePostHead } from "../rooms/validate.ts";
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
    if (position === undefined || !ChatError.is(err)) throw err;
    throw new ChatError(err.code, at(position) + err.message);
  }
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
    post: { user: string; room: string; hasContent: boolean },
    position: number | undefined,
  ) => {
    if (
      post.user === validUser && post.room === validRoom && post.hasContent
    ) return;
    validated(post, position);
    validUser = post.user;
    validRoom = post.room;
  };
  return {
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
      if (user === message.user) {
        validate(message, position);
        ctx.access.allowPost(caller, message.room);
        return bytes;
      }
      validate(
        { user, room: message.room, hasContent: message.hasContent },
        position,
      );
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
      const filled = new Uint8Array(size);
      filled.set(bytes);
      filled.set(userField, bytes.byteLength);
      return filled;
    },
  };
}
