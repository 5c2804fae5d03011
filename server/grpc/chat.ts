/**
 * Chat (bidirectional): echo each message, broadcast it to its room, and
 * say "Server is alive!" every `aliveIntervalMs`.
 *
 * Backpressure runs end to end: when an echo cannot be written (the client
 * reads slowly), reading stops until 'drain', so a client cannot make the
 * server buffer echoes without bound. The broadcast itself never waits.
 */
import type { ServerDuplexStream } from "@grpc/grpc-js";
import type { Message } from "../../gen/chat_pb.ts";
import { validatePost } from "../rooms/validate.ts";
import type { HandlerContext } from "./context.ts";
import type { InboundMessage } from "./definition.ts";
import { aliveMessage, echoMessage } from "./messages.ts";
import { frameMessage } from "./framing.ts";
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
    let paused = false;
    const send = (bytes: Uint8Array) => {
      if (!call.write(bytes) && !paused) {
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
    call.on("drain", onDrain);
    call.on("end", onEnd);
    stream.defer(() => {
      call.off("data", onData);
      call.off("drain", onDrain);
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
