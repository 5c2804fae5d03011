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
import { endAtExpiry, withCaller } from "./caller.ts";
import { inboundPosts } from "./inbound_posts.ts";
import type { HandlerContext } from "./context.ts";
import { type InboundMessage, inboundParts } from "./definition.ts";
import { frameMessage } from "./framing.ts";
import { openStream } from "./stream.ts";
import { decodePost } from "./post_decoder.ts";
import { readMessages } from "../grpcjs/raw_reader.ts";

type Call = ServerReadableStream<InboundMessage, UploadResponse>;

export function uploadMessagesHandler(ctx: HandlerContext) {
  return withCaller(ctx, (
    _call: Call,
    err,
    callback: sendUnaryData<UploadResponse>,
  ) => callback(err), (call, caller, callback): void => {
    let count = 0;
    const stream = openStream(call, ctx, (err) => {
      if (err) callback(err);
      else {callback(
          null,
          create(UploadResponseSchema, { messageCount: count, success: true }),
        );}
    });
    endAtExpiry(ctx, stream, caller);
    const posts = inboundPosts(ctx, caller);
    const reader = readMessages(call, decodePost, {
      message(message, bytes) {
        try {
          bytes = posts.check(message, bytes, `message ${count + 1}: `);
        } catch (err) {
          stream.finish(err);
          return;
        }
        count++;
        ctx.hub.publishWith(message.room, () => frameMessage(bytes));
      },
      end: () => stream.finish(),
      error: (err) => stream.finish(err),
    }, inboundParts);
    stream.defer(reader.stop);
  });
}
