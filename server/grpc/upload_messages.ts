/**
 * UploadMessages (client streaming): broadcast each message as it arrives,
 * answer `{message_count, success}` when the client half-closes.
 *
 * Each message is fanned out with the bytes the client sent. A message
 * missing its user, room or content ends the upload with INVALID_ARGUMENT
 * naming its position; the ones before it were already delivered.
 */
import { create } from "@bufbuild/protobuf";
import type { sendUnaryData, ServerReadableStream } from "@grpc/grpc-js";
import {
  type UploadResponse,
  UploadResponseSchema,
} from "../../gen/chat_pb.ts";
import { validatePost } from "../rooms/validate.ts";
import type { HandlerContext } from "./context.ts";
import type { InboundMessage } from "./definition.ts";
import { frameMessage } from "./framing.ts";
import { openStream } from "./stream.ts";

export function uploadMessagesHandler(ctx: HandlerContext) {
  return (
    call: ServerReadableStream<InboundMessage, UploadResponse>,
    callback: sendUnaryData<UploadResponse>,
  ): void => {
    let count = 0;
    const stream = openStream(call, ctx, (err) => {
      if (err) callback(err);
      else {callback(
          null,
          create(UploadResponseSchema, { messageCount: count, success: true }),
        );}
    });
    const onData = ({ message, bytes }: InboundMessage) => {
      try {
        validatePost(message, `message ${count + 1}: `);
      } catch (err) {
        stream.finish(err);
        return;
      }
      count++;
      ctx.hub.publishWith(message.room, () => frameMessage(bytes));
    };
    const onEnd = () => stream.finish();
    call.on("data", onData);
    call.on("end", onEnd);
    stream.defer(() => {
      call.off("data", onData);
      call.off("end", onEnd);
    });
  };
}
