/**
 * UploadMessages (client streaming): broadcast each message as it arrives,
 * answer `{message_count, success}` when the client half-closes.
 *
 * Each message is stored and fanned out with the bytes the client sent (plus
 * its offset and epoch). One with an `idempotency_key` is stored once per
 * key in the window (streamed_posts.ts): sent again, it is counted and not
 * stored again. `message_count` counts the messages committed: the
 * answer waits for the last commit, and a failed one ends the upload with
 * UNAVAILABLE. A message missing its user, room or content ends the upload
 * with INVALID_ARGUMENT naming its position; the ones before it were
 * already published.
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
import { checkBroadcastSize } from "./messages.ts";
import { openStream } from "./stream.ts";
import { streamedPosts } from "./streamed_posts.ts";
import { decodePostHead } from "./post_decoder.ts";
import { readMessages } from "../grpcjs/raw_reader.ts";

type Call = ServerReadableStream<InboundMessage, UploadResponse>;

export function uploadMessagesHandler(ctx: HandlerContext) {
  return withCaller(ctx, (
    _call: Call,
    err,
    callback: sendUnaryData<UploadResponse>,
  ) => callback(err), (call, caller, callback): void => {
    // Counted when committed; the answer waits for the last commit.
    let count = 0;
    let accepted = 0;
    let ended = false;
    const stream = openStream(call, ctx, (err) => {
      if (err) callback(err);
      else {callback(
          null,
          create(UploadResponseSchema, { messageCount: count, success: true }),
        );}
    });
    const stored = (err: unknown) => {
      if (err) return stream.finish(err);
      count++;
      if (ended && count === accepted) stream.finish();
    };
    endAtExpiry(ctx, stream, caller);
    const posts = inboundPosts(ctx, caller);
    const poster = streamedPosts(ctx, stored, {
      pause: () => reader.pause(),
      resume: () => reader.resume(),
    });
    const reader = readMessages(call, decodePostHead, {
      message(message, bytes) {
        try {
          bytes = posts.check(message, bytes, accepted + 1);
          checkBroadcastSize(bytes, ctx.config.maxMessageBytes);
        } catch (err) {
          stream.finish(err);
          return;
        }
        accepted++;
        poster.post(message.room, posts.user, message.key, bytes);
      },
      end: () => {
        ended = true;
        if (count === accepted) stream.finish();
      },
      error: (err) => stream.finish(err),
    }, inboundParts);
    stream.defer(reader.stop);
    stream.defer(() => poster.stop());
  });
}
