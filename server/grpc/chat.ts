/**
 * Chat (bidirectional): echo each message, store and broadcast it to its
 * room, and say "Server is alive!" every `aliveIntervalMs`.
 *
 * Backpressure runs end to end: when an echo cannot be written (the client
 * reads slowly), reading stops until 'drain', so a client cannot make the
 * server buffer echoes without bound. The broadcast itself never waits.
 *
 * Echoes go straight to the HTTP/2 stream (raw_stream.ts): its byte-sized
 * buffer lets a pipelining client keep hundreds of echoes in flight, where
 * grpc-js's object-mode Writable paused reading after 16.
 */
import type { ServerDuplexStream } from "@grpc/grpc-js";
import type { Message } from "../../gen/chat_pb.ts";
import { endAtExpiry, withCaller } from "./caller.ts";
import { inboundPosts } from "./inbound_posts.ts";
import type { HandlerContext } from "./context.ts";
import { type InboundMessage, inboundParts } from "./definition.ts";
import { decodePost } from "./post_decoder.ts";
import { readMessages } from "../grpcjs/raw_reader.ts";
import {
  aliveMessage,
  checkBroadcastSize,
  frameEchoMessage,
} from "./messages.ts";
import { frameMessage } from "./framing.ts";
import { messageWriter } from "../grpcjs/raw_stream.ts";
import { openStream } from "./stream.ts";

type Call = ServerDuplexStream<InboundMessage, Message | Uint8Array>;

export function chatHandler(ctx: HandlerContext) {
  return withCaller(ctx, (call: Call, err) => call.emit("error", err), (
    call,
    caller,
  ): void => {
    const stream = openStream(
      call,
      ctx,
      (err) => err ? call.emit("error", err) : call.end(),
    );
    const writer = messageWriter(call);
    // Runs last of the cleanups: pending echoes go before the status.
    stream.defer(writer.flush);
    let paused = false;
    const send = (framed: Uint8Array) => {
      if (!writer.write(framed) && !paused) {
        paused = true;
        reader.pause();
      }
    };
    // The original goes to the room once stored; a failed store ends the
    // call (UNAVAILABLE), so the client knows what was not delivered. After
    // the client half-closes, OK waits for the last of its commits.
    let pending = 0;
    let ended = false;
    const published = (err: unknown) => {
      pending--;
      if (err) stream.finish(err);
      else if (ended && pending === 0) stream.finish();
    };
    endAtExpiry(ctx, stream, caller);
    const posts = inboundPosts(ctx, caller);
    const reader = readMessages(call, decodePost, {
      message(message, bytes) {
        try {
          bytes = posts.check(message, bytes);
          checkBroadcastSize(bytes, ctx.config.maxMessageBytes);
        } catch (err) {
          stream.finish(err);
          return;
        }
        send(frameEchoMessage(message));
        pending++;
        ctx.hub.publish(message.room, bytes, published);
      },
      // The client half-closed: end with OK once its messages are stored
      // (and pending echoes written).
      end: () => {
        ended = true;
        if (pending === 0) stream.finish();
      },
      error: (err) => stream.finish(err),
    }, inboundParts);
    const onDrain = () => {
      if (paused) {
        paused = false;
        reader.resume();
      }
    };
    stream.defer(writer.onDrain(onDrain));
    stream.defer(reader.stop);

    if (ctx.config.aliveIntervalMs > 0) {
      const timer = setInterval(() => {
        // Skipped, not queued, while the client is not reading.
        if (!paused) send(frameMessage(aliveMessage()));
      }, ctx.config.aliveIntervalMs);
      stream.defer(() => clearInterval(timer));
    }
  });
}
