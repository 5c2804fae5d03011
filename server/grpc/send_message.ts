/**
 * SendMessage (unary): validate, assign `msg_N`, store, broadcast once-framed
 * bytes, answer with the offset.
 *
 * One function does the work ({@linkcode postMessage}); two transports call
 * it: the direct unary path (direct_unary.ts), which takes every plain call,
 * and grpc-js's handler, which takes what the direct path leaves to grpc-js
 * (compressed requests, or a grpc-js layout the direct path does not know).
 */
import type { sendUnaryData, ServerUnaryCall } from "@grpc/grpc-js";
import type {
  SendMessageRequest,
  SendMessageResponse,
} from "../../gen/chat_pb.ts";
import { ChatError } from "../rooms/errors.ts";
import { validateIdempotencyKey, validatePost } from "../rooms/validate.ts";
import type { IdempotencyIndex } from "../rooms/idempotency.ts";
import { MessageType } from "../../gen/chat_pb.ts";
import { PREFIX_BYTES } from "./framing.ts";
import type { HandlerContext } from "./context.ts";
import {
  encodeSendResponse,
  frameChatMessage,
  frameSendResponse,
  STORED_TAIL_BYTES,
} from "./messages.ts";

export { encodeSendResponse };
import type { SendFields } from "./post_decoder.ts";
import { toServiceError } from "./status.ts";
import { publishKeyed } from "./publish_keyed.ts";
import type { Caller } from "../auth/access.ts";
import { withCaller } from "./caller.ts";

/** Where a post's answer goes: an error, or the encoded response. */
export interface PostReply {
  reply(err: unknown, response?: Uint8Array): void;
  /**
   * The response already framed (its gRPC prefix first), when the caller
   * takes it so: one buffer and no copy (the direct unary path).
   */
  replyFramed?(framed: Uint8Array): void;
}

/**
 * Validates and publishes one post; `reply` gets the encoded
 * `SendMessageResponse` once the message is committed (or UNAVAILABLE when
 * the store failed). Throws a ChatError for a bad request, before anything
 * is published.
 */
export function postMessage(
  ctx: HandlerContext,
  req: SendFields,
  caller: Caller,
  reply: PostReply,
): void {
  ctx.hub.stats.callsStarted++;
  const user = ctx.access.userOf(caller, req.user);
  validatePost(user === req.user ? req : { ...req, user });
  const key = req.idempotencyKey;
  // Checked with the rest, before the rate limit counts the call.
  if (key !== "") validateIdempotencyKey(key);
  ctx.access.allowPost(caller, req.room);
  if (key !== "" && ctx.idempotency !== undefined) {
    return postOnce(ctx, ctx.idempotency, user, req, reply);
  }
  const post = frame(ctx, user, req);
  ctx.hub.publish(req.room, post.body, (err, stored) => {
    if (err) reply.reply(err);
    else respond(reply, post.id, post.timeMs, stored!.offset);
  });
}

/** A keyed post: published once per key in the window (idempotency.ts). */
function postOnce(
  ctx: HandlerContext,
  idempotency: IdempotencyIndex,
  user: string,
  req: SendFields,
  reply: PostReply,
): void {
  idempotency.post(req.room, user, req.idempotencyKey, (done, scope) => {
    const post = frame(ctx, user, req);
    publishKeyed(ctx, req.room, post.body, scope, post.id, post.timeMs, done);
  }, (err, result) => {
    if (err !== undefined || result === undefined) reply.reply(err);
    else respond(reply, result.id, result.timeMs, result.offset);
  });
}

/**
 * A post as stored and broadcast, with its new `msg_N` and time. Throws a
 * ChatError for one too large to broadcast.
 */
function frame(
  ctx: HandlerContext,
  user: string,
  req: SendFields,
): { id: string; timeMs: number; body: Uint8Array } {
  const id = ctx.hub.nextMessageId();
  const timeMs = Date.now();
  const framed = frameChatMessage(
    id,
    user,
    req.content,
    req.room,
    timeMs,
    MessageType.CHAT,
    req.idempotencyKey,
  );
  // The id, timestamp, offset and epoch make the broadcast larger than the
  // request. One that subscribers could not receive is the sender's error,
  // not theirs.
  const size = framed.byteLength - PREFIX_BYTES + STORED_TAIL_BYTES;
  if (size > ctx.config.maxMessageBytes) {
    throw new ChatError(
      "resource_exhausted",
      `message too large to broadcast: ${size} bytes with its id, timestamp and offset, limit ${ctx.config.maxMessageBytes}`,
    );
  }
  return { id, timeMs, body: framed.subarray(PREFIX_BYTES) };
}

function respond(
  reply: PostReply,
  id: string,
  timeMs: number,
  offset: number,
): void {
  if (reply.replyFramed !== undefined) {
    reply.replyFramed(frameSendResponse(id, timeMs, offset));
  } else reply.reply(undefined, encodeSendResponse(id, timeMs, offset));
}

/** grpc-js's handler for the calls the direct path does not take. */
export function sendMessageHandler(ctx: HandlerContext) {
  return withCaller(
    ctx,
    (_call, err, callback: sendUnaryData<Uint8Array>) => callback(err),
    (
      call: ServerUnaryCall<SendMessageRequest, SendMessageResponse>,
      caller,
      callback,
    ): void => {
      try {
        postMessage(ctx, call.request, caller, {
          reply(err, response) {
            if (err) callback(toServiceError(err));
            else callback(null, response);
          },
        });
      } catch (err) {
        callback(toServiceError(err));
      }
    },
  );
}
