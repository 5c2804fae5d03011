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
import { validatePost } from "../rooms/validate.ts";
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
  ctx.access.allowPost(caller, req.room);
  const id = ctx.hub.nextMessageId();
  const nowMs = Date.now();
  const framed = frameChatMessage(id, user, req.content, req.room, nowMs);
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
  ctx.hub.publish(req.room, framed.subarray(PREFIX_BYTES), (err, stored) => {
    if (err) reply.reply(err);
    else if (reply.replyFramed !== undefined) {
      reply.replyFramed(frameSendResponse(id, nowMs, stored!.offset));
    } else {reply.reply(
        undefined,
        encodeSendResponse(id, nowMs, stored!.offset),
      );}
  });
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
