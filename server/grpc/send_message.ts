/**
 * SendMessage (unary): validate, assign `msg_N`, broadcast once-framed bytes.
 */
import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { sendUnaryData, ServerUnaryCall } from "@grpc/grpc-js";
import {
  MessageType,
  type SendMessageRequest,
  type SendMessageResponse,
  SendMessageResponseSchema,
} from "../../gen/chat_pb.ts";
import { validatePost } from "../rooms/validate.ts";
import type { HandlerContext } from "./context.ts";
import { frameMessage } from "./framing.ts";
import { encodeMessage } from "./messages.ts";
import { toServiceError } from "./status.ts";

export function sendMessageHandler(ctx: HandlerContext) {
  return (
    call: ServerUnaryCall<SendMessageRequest, SendMessageResponse>,
    callback: sendUnaryData<SendMessageResponse>,
  ): void => {
    ctx.hub.stats.callsStarted++;
    const req = call.request;
    try {
      validatePost(req);
    } catch (err) {
      callback(toServiceError(err));
      return;
    }
    const id = ctx.hub.nextMessageId();
    const timestamp = timestampFromMs(Date.now());
    ctx.hub.publish(
      req.room,
      frameMessage(encodeMessage({
        id,
        user: req.user,
        content: req.content,
        room: req.room,
        timestamp,
        type: MessageType.CHAT,
      })),
    );
    callback(
      null,
      create(SendMessageResponseSchema, { messageId: id, timestamp }),
    );
  };
}
