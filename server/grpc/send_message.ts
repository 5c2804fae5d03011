/**
 * SendMessage (unary): validate, assign `msg_N`, broadcast once-framed bytes.
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
import { encodeSendResponse, frameChatMessage } from "./messages.ts";

export { encodeSendResponse };
import type { SendFields } from "./post_decoder.ts";
import { toServiceError } from "./status.ts";
import type { Caller } from "../auth/access.ts";
import { withCaller } from "./caller.ts";

/**
 * Validates and broadcasts one post; returns the encoded
 * `SendMessageResponse`. Throws a ChatError for a bad request.
 */
export function postMessage(
  ctx: HandlerContext,
  req: SendFields,
  caller: Caller,
): Uint8Array {
  ctx.hub.stats.callsStarted++;
  const user = ctx.access.userOf(caller, req.user);
  validatePost(user === req.user ? req : { ...req, user });
  ctx.access.allowPost(caller, req.room);
  const id = ctx.hub.nextMessageId();
  const nowMs = Date.now();
  ctx.hub.publishWith(req.room, () => {
    const framed = frameChatMessage(id, user, req.content, req.room, nowMs);
    // The id and timestamp make the broadcast larger than the request. One
    // that subscribers could not receive is the sender's error, not theirs.
    const size = framed.byteLength - PREFIX_BYTES;
    if (size > ctx.config.maxMessageBytes) {
      throw new ChatError(
        "resource_exhausted",
        `message too large to broadcast: ${size} bytes with its id and timestamp, limit ${ctx.config.maxMessageBytes}`,
      );
    }
    return framed;
  });
  return encodeSendResponse(id, nowMs);
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
      let response: Uint8Array;
      try {
        response = postMessage(ctx, call.request, caller);
      } catch (err) {
        callback(toServiceError(err));
        return;
      }
      callback(null, response);
    },
  );
}
