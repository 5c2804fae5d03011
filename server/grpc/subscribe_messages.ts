/**
 * SubscribeMessages (server streaming): a welcome, then the history asked
 * for (`history`, or `epoch` + `since_offset`), then the room, live; see
 * docs/history.md.
 *
 * The subscriber's sink writes the room's framed bytes straight to the
 * call's HTTP/2 stream (raw_stream.ts); `write()` returning false pauses
 * deliveries into the bounded queue until that stream's 'drain'.
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
import { frameMessage } from "./framing.ts";
import { presenceMessage, welcomeMessage } from "./messages.ts";
import { messageWriter } from "../grpcjs/raw_stream.ts";
import { openStream } from "./stream.ts";
import { endAtExpiry, withCaller } from "./caller.ts";

type Call = ServerWritableStream<SubscribeRequest, Message | Uint8Array>;

export function subscribeMessagesHandler(ctx: HandlerContext) {
  return withCaller(ctx, (call: Call, err) => call.emit("error", err), (
    call: Call,
    caller,
  ): void => {
    const stream = openStream(
      call,
      ctx,
      (err) => err ? call.emit("error", err) : call.end(),
    );
    const { room } = call.request;
    let user: string;
    try {
      user = ctx.access.userOf(caller, call.request.user);
      validateSubscription({ room, user });
      stream.defer(ctx.access.allowSubscribe(caller, room));
    } catch (err) {
      stream.finish(err);
      return;
    }
    const sinceOffset = Number(call.request.sinceOffset);
    const { epoch, history } = call.request;
    if (sinceOffset > 0 && epoch === "") {
      stream.finish(
        new ChatError(
          "invalid_argument",
          "since_offset needs the epoch it belongs to",
        ),
      );
      return;
    }
    endAtExpiry(ctx, stream, caller);
    const writer = messageWriter(call);
    // Runs last of the cleanups: pending messages go before the status.
    stream.defer(writer.flush);
    const { subscriber, leave } = ctx.hub.subscribe(room, writer, {
      history,
      sinceOffset,
      epoch,
      welcome: (position) =>
        frameMessage(welcomeMessage(room, user, Date.now(), position)),
      onOverflow: () => {
        stream.finish(new ChatError("resource_exhausted", "client too slow"));
        // A client that stopped reading never gets that status: flow
        // control holds it behind the queued data. Reset the stream after a
        // grace, so that its slot and buffers are freed. grpc-js emits
        // 'cancelled' when the stream closes in any way, which ends the wait.
        const timer = setTimeout(() => {
          if (writer.reset()) ctx.hub.stats.stalledResets++;
        }, ctx.config.slowConsumerGraceMs);
        call.once("cancelled", () => clearTimeout(timer));
      },
      onError: (err) => stream.finish(err),
    });
    stream.defer(writer.onDrain(() => subscriber.resume()));
    // Presence messages are room messages: stored, with an offset. A failed
    // store loses only the announcement.
    const announce = (type: MessageType.JOIN | MessageType.LEAVE) =>
      ctx.hub.publish(room, presenceMessage(room, user, type));
    if (ctx.config.presence) {
      // Deferred cleanups run in reverse: leave first, then tell the others.
      stream.defer(() => announce(MessageType.LEAVE));
      ctx.presence?.join(room, user);
      stream.defer(() => ctx.presence?.leave(room, user));
    }
    stream.defer(leave);
    ctx.log.debug(`subscribe room=${room} user=${user}`);
    stream.defer(() => ctx.log.debug(`unsubscribe room=${room} user=${user}`));

    // The newcomer sees its own JOIN after the welcome, like everyone else.
    if (ctx.config.presence) announce(MessageType.JOIN);
  });
}
