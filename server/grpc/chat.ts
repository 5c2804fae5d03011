/**
 * Chat (bidirectional): store each message and broadcast it to its room,
 * then echo it; say "Server is alive!" every `aliveIntervalMs`. A message
 * with an `idempotency_key` is stored once per key in the window
 * (streamed_posts.ts): sent again, it is echoed and not stored again.
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
import { type ChatPost, decodeChatPost } from "./post_decoder.ts";
import { readMessages } from "../grpcjs/raw_reader.ts";
import {
  aliveMessage,
  checkBroadcastSize,
  checkEchoSize,
  planEcho,
  writeEcho,
} from "./messages.ts";
import { turnNow } from "../rooms/turn_clock.ts";
import { frameMessage } from "./framing.ts";
import { messageWriter } from "../grpcjs/raw_stream.ts";
import { openStream } from "./stream.ts";
import { streamedPosts } from "./streamed_posts.ts";
import { Fifo } from "../../http2/server/fifo.ts";

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
    // Reading stops while echoes cannot be written (`paused`) and while a
    // keyed message waits for its room's keys (`held`).
    let paused = false;
    let held = false;
    const full = () => {
      if (!paused) {
        paused = true;
        reader.pause();
      }
    };
    // The original goes to the room once stored, and its echo follows then:
    // an echo says "stored and broadcast" (or, for a repeated key, stored
    // before). The poster reports commits in the order the messages came,
    // so the messages waiting for theirs are a FIFO. A failed store
    // ends the call (UNAVAILABLE), so the client knows what was not
    // delivered; after the client half-closes, OK waits for the last commit.
    const waiting = new Fifo<ChatPost>();
    let ended = false;
    let finished = false;
    stream.defer(() => finished = true);
    const published = (err: unknown) => {
      const message = waiting.shift()!;
      if (finished) return; // cancelled or failed meanwhile: no one to echo to
      if (err) return stream.finish(err);
      // Encoded straight into the turn's output; every echo of a turn has
      // the turn's time.
      if (!writer.writeEncoded(planEcho(message, turnNow()), writeEcho)) full();
      if (ended && waiting.length === 0) stream.finish();
    };
    endAtExpiry(ctx, stream, caller);
    const posts = inboundPosts(ctx, caller);
    const poster = streamedPosts(ctx, published, {
      pause() {
        held = true;
        reader.pause();
      },
      resume() {
        held = false;
        if (!paused) reader.resume();
      },
    });
    const reader = readMessages(call, decodeChatPost, {
      message(message, bytes) {
        try {
          bytes = posts.check(message, bytes);
          checkBroadcastSize(bytes, ctx.config.maxMessageBytes);
          checkEchoSize(message, ctx.config.maxMessageBytes);
        } catch (err) {
          stream.finish(err);
          return;
        }
        waiting.push(message);
        poster.post(message.room, posts.user, message.key, bytes);
      },
      // The client half-closed: end with OK once its messages are stored
      // (and their echoes written).
      end: () => {
        ended = true;
        if (waiting.length === 0) stream.finish();
      },
      error: (err) => stream.finish(err),
    }, inboundParts);
    const onDrain = () => {
      if (paused) {
        paused = false;
        if (!held) reader.resume();
      }
    };
    stream.defer(writer.onDrain(onDrain));
    stream.defer(reader.stop);
    stream.defer(() => poster.stop());

    if (ctx.config.aliveIntervalMs > 0) {
      const timer = setInterval(() => {
        // Skipped, not queued, while the client is not reading.
        if (!paused && !writer.write(frameMessage(aliveMessage()))) full();
      }, ctx.config.aliveIntervalMs);
      stream.defer(() => clearInterval(timer));
    }
  });
}
