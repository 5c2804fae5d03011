/**
 * Chat (bidirectional): echo each message, broadcast it to its room, and
 * say "Server is alive!" every `aliveIntervalMs`.
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
import { validatePost } from "../rooms/validate.ts";
import type { HandlerContext } from "./context.ts";
import type { InboundMessage } from "./definition.ts";
import { aliveMessage, echoMessage } from "./messages.ts";
import { frameMessage } from "./framing.ts";
import { messageWriter } from "./raw_stream.ts";
import { openStream } from "./stream.ts";

export function chatHandler(ctx: HandlerContext) {
  return (
    call: ServerDuplexStream<InboundMessage, Message | Uint8Array>,
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
    const send = (bytes: Uint8Array) => {
      if (!writer.write(frameMessage(bytes)) && !paused) {
        paused = true;
        call.pause();
      }
    };
    const onData = ({ message, bytes }: InboundMessage) => {
      try {
        validatePost(message);
      } catch (err) {
        stream.finish(err);
        return;
      }
      send(echoMessage(message));
      ctx.hub.publishWith(message.room, () => frameMessage(bytes));
    };
    const onDrain = () => {
      if (paused) {
        paused = false;
        call.resume();
      }
    };
    // The client half-closed: end with OK once pending echoes are written.
    const onEnd = () => stream.finish();
    call.on("data", onData);
    stream.defer(writer.onDrain(onDrain));
    call.on("end", onEnd);
    stream.defer(() => {
      call.off("data", onData);
      call.off("end", onEnd);
    });

    if (ctx.config.aliveIntervalMs > 0) {
      const timer = setInterval(() => {
        // Skipped, not queued, while the client is not reading.
        if (!paused) send(aliveMessage());
      }, ctx.config.aliveIntervalMs);
      stream.defer(() => clearInterval(timer));
    }
  };
}
