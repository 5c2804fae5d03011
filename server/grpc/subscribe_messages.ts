/**
 * SubscribeMessages (server streaming): a welcome, then the room, live.
 *
 * The subscriber's sink is the call itself: `write()` returning false pauses
 * deliveries into the bounded queue until grpc-js emits 'drain'.
 */
import type { ServerWritableStream } from "@grpc/grpc-js";
import {
  type Message,
  MessageType,
  type SubscribeRequest,
} from "../../gen/chat_pb.ts";
import { ChatError } from "../rooms/errors.ts";
import { validateSubscription } from "../rooms/validate.ts";
import type { HandlerContext } from "./context.ts";
import { presenceMessage, welcomeMessage } from "./messages.ts";
import { openStream } from "./stream.ts";

export function subscribeMessagesHandler(ctx: HandlerContext) {
  return (
    call: ServerWritableStream<SubscribeRequest, Message | Uint8Array>,
  ): void => {
    const stream = openStream(
      call,
      ctx,
      (err) => err ? call.emit("error", err) : call.end(),
    );
    const { room, user } = call.request;
    try {
      validateSubscription(call.request);
    } catch (err) {
      stream.finish(err);
      return;
    }
    const { subscriber, leave } = ctx.hub.subscribe(
      room,
      { write: (bytes) => call.write(bytes) },
      () =>
        stream.finish(new ChatError("resource_exhausted", "client too slow")),
    );
    const onDrain = () => subscriber.resume();
    call.on("drain", onDrain);
    stream.defer(() => call.off("drain", onDrain));
    if (ctx.config.presence) {
      // Deferred cleanups run in reverse: leave first, then tell the others.
      stream.defer(() =>
        ctx.hub.publish(room, presenceMessage(room, user, MessageType.LEAVE))
      );
    }
    stream.defer(leave);
    ctx.log.debug(`subscribe room=${room} user=${user}`);
    stream.defer(() => ctx.log.debug(`unsubscribe room=${room} user=${user}`));

    subscriber.deliver(welcomeMessage(room, user));
    // The newcomer sees its own JOIN after the welcome, like everyone else.
    if (ctx.config.presence) {
      ctx.hub.publish(room, presenceMessage(room, user, MessageType.JOIN));
    }
  };
}
