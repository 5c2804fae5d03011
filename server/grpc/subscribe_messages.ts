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
import type { EventEmitter } from "node:events";
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
import { type MessageWriter, messageWriter } from "../grpcjs/raw_stream.ts";
import type { DirectServerCall } from "../grpcjs/direct_stream.ts";
import type {
  Replay,
  SubscribeOptions,
  Subscription as HubSubscription,
} from "../rooms/hub.ts";
import type { RoomPosition } from "../rooms/history_store.ts";
import { openStream, type StreamControl } from "./stream.ts";
import { endAtExpiry, withCaller } from "./caller.ts";

/** grpc-js's call, or the direct streaming path's (the default on h2). */
type Call =
  | ServerWritableStream<SubscribeRequest, Message | Uint8Array>
  | DirectServerCall<SubscribeRequest>;

export function subscribeMessagesHandler(ctx: HandlerContext) {
  return withCaller(ctx, (call: Call, err) => call.emit("error", err), (
    call: Call,
    caller,
  ): void => {
    const stream = openStream(call as EventEmitter & { end(): unknown }, ctx);
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
    new Subscription(ctx, call, stream, room, user, {
      history,
      sinceOffset,
      epoch,
    }).open();
  });
}

/**
 * One subscriber's call, past its checks: the hub's callbacks and its one
 * cleanup as methods of one object rather than a closure each, since an
 * idle subscriber is held for as long as it stays (docs/perf-log.md, "Idle
 * subscribers").
 */
class Subscription implements SubscribeOptions<Uint8Array>, Disposable {
  readonly #writer: MessageWriter;
  #member: HubSubscription<Uint8Array> | undefined;
  #offDrain: (() => void) | undefined;
  /** Whether its JOIN was said (with --presence), and whether it ended. */
  #joined = false;
  #gone = false;

  constructor(
    readonly ctx: HandlerContext,
    readonly call: Call,
    readonly stream: StreamControl,
    readonly room: string,
    readonly user: string,
    replay: Replay,
  ) {
    this.#writer = messageWriter(call);
    this.history = replay.history;
    this.sinceOffset = replay.sinceOffset;
    this.epoch = replay.epoch;
  }

  // Replay: read by the hub once, at subscription.
  readonly history: number | undefined;
  readonly sinceOffset: number | undefined;
  readonly epoch: string | undefined;

  open(): void {
    const { ctx, room, user } = this;
    this.stream.defer(this);
    const member = ctx.hub.subscribe(room, this.#writer, this);
    this.#member = member;
    this.#offDrain = this.#writer.onDrain(() => member.subscriber.resume());
    if (ctx.config.presence) ctx.presence?.join(room, user);
    ctx.log.debug(`subscribe room=${room} user=${user}`);
  }

  /**
   * The cleanup, in the order the separate ones used to run: leave the
   * room, then tell the others, then stop listening for drains, and last
   * the pending messages go out before the status.
   */
  [Symbol.dispose](): void {
    const { ctx, room, user } = this;
    this.#gone = true;
    ctx.log.debug(`unsubscribe room=${room} user=${user}`);
    this.#member?.leave();
    if (ctx.config.presence) {
      ctx.presence?.leave(room, user);
      // No LEAVE for a JOIN never said (the room's position never came).
      if (this.#joined) this.#announce(MessageType.LEAVE);
    }
    this.#offDrain?.();
    this.#writer.flush();
  }

  // Presence messages are room messages: stored, with an offset. A failed
  // store loses only the announcement.
  #announce(type: MessageType.JOIN | MessageType.LEAVE): void {
    this.ctx.hub.publish(
      this.room,
      presenceMessage(this.room, this.user, type),
    );
  }

  welcome(position: RoomPosition): Uint8Array {
    if (this.ctx.config.presence) {
      // The newcomer sees its own JOIN after the welcome, like everyone
      // else: it is said once the welcome's position is fixed, not before
      // (a shared store's position is read from Redis, and a JOIN stored
      // first would count in the welcome's offset and never reach it).
      // After the hub's turn, which is still placing this subscriber.
      queueMicrotask(() => {
        if (this.#gone) return;
        this.#joined = true;
        this.#announce(MessageType.JOIN);
      });
    }
    return frameMessage(
      welcomeMessage(this.room, this.user, Date.now(), position),
    );
  }

  onOverflow(): void {
    const { ctx, call } = this;
    this.stream.finish(new ChatError("resource_exhausted", "client too slow"));
    // A client that stopped reading never gets that status: flow control
    // holds it behind the queued data. Reset the stream after a grace, so
    // that its slot and buffers are freed. grpc-js emits 'cancelled' when
    // the stream closes in any way, which ends the wait.
    const writer = this.#writer;
    const timer = setTimeout(() => {
      if (writer.reset()) ctx.hub.stats.stalledResets++;
    }, ctx.config.slowConsumerGraceMs);
    (call as EventEmitter).once("cancelled", () => clearTimeout(timer));
  }

  onError(err: ChatError): void {
    this.stream.finish(err);
  }
}
