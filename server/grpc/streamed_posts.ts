/**
 * Publishes a stream's messages (UploadMessages, Chat) with their
 * idempotency keys checked, and reports their commits in the order the
 * messages came.
 *
 * A message with an `idempotency_key` goes through the idempotency index as
 * a keyed SendMessage does (rooms/idempotency.ts): sent again by the same
 * user to the same room within the window, it is stored and delivered once,
 * and its repeat is reported as committed. So a client whose stream broke
 * may send again every message it did not see confirmed (an upload whose
 * summary it never got, a Chat line whose echo it never got) without
 * posting twice.
 *
 * Order is kept both ways. The store gets the messages in the order they
 * came: a keyed message that waits for its room's stored keys to be read
 * (its first keyed post after a start) holds back the stream's later
 * messages, and the stream's reader is paused meanwhile, so at most what it
 * had already received is held. And `done` hears of each message in that
 * order, a repeat answered at once included, which Chat's echoes and
 * Upload's count rely on.
 *
 * A stream of unkeyed messages takes the path it took before: each goes to
 * the hub at once, and the hub's commits come back in publish order.
 *
 * @module
 */
import type { ChatError } from "../rooms/errors.ts";
import type { PublishDone } from "../rooms/idempotency.ts";
import type { HandlerContext } from "./context.ts";
import { decodePost } from "./post_decoder.ts";
import { publishKeyed } from "./publish_keyed.ts";

/** A stream's poster; see the module doc. */
export interface StreamedPosts {
  /** Publishes `bytes` to `room` as `user`; `key` "" for none. */
  post(room: string, user: string, key: string, bytes: Uint8Array): void;
  /**
   * The call ended: the reader is not resumed again. The messages it had
   * accepted are still published, in order, once the keyed one they wait
   * behind has gone (an upload ended at message N has stored the ones
   * before it, as without keys).
   */
  stop(): void;
  /** Slots in memory, reported ones included (their memory, for tests). */
  readonly listed: number;
}

/** The stream's reader, paused while a message waits for a room's keys. */
export interface Hold {
  pause(): void;
  resume(): void;
}

const WAITING = 0, STARTED = 1, FINISHED = 2;

/** A message posted after a keyed one, until all before it are reported. */
interface Slot {
  readonly room: string;
  readonly user: string;
  readonly key: string;
  bytes: Uint8Array | undefined;
  state: typeof WAITING | typeof STARTED | typeof FINISHED;
  err: unknown;
}

/**
 * Creates the poster of one stream; `done` hears once per message (an error
 * when it was not stored), in the order they were posted.
 */
export function streamedPosts(
  ctx: HandlerContext,
  done: (err: ChatError | undefined) => void,
  hold: Hold,
): StreamedPosts {
  return new Poster(ctx, done, hold);
}

class Poster implements StreamedPosts {
  readonly #ctx: HandlerContext;
  readonly #done: (err: ChatError | undefined) => void;
  readonly #hold: Hold;
  /** Unkeyed messages at the hub, ahead of every slot. */
  #inflight = 0;
  /** Messages from the first keyed one on, until all are reported. */
  #slots: (Slot | undefined)[] = [];
  /** The next slot to report. */
  #head = 0;
  /** The next slot to start. */
  #next = 0;
  /** The keyed message waiting for its room's keys to be read. */
  #gate: Slot | undefined;
  #stopped = false;

  constructor(
    ctx: HandlerContext,
    done: (err: ChatError | undefined) => void,
    hold: Hold,
  ) {
    this.#ctx = ctx;
    this.#done = done;
    this.#hold = hold;
  }

  post(room: string, user: string, key: string, bytes: Uint8Array): void {
    if (this.#ctx.idempotency === undefined) key = ""; // keys are off
    if (key === "" && this.#slots.length === 0) {
      this.#inflight++;
      this.#ctx.hub.publish(room, bytes, this.#unkeyedDone);
      return;
    }
    this.#slots.push({
      room,
      user,
      key,
      bytes,
      state: WAITING,
      err: undefined,
    });
    this.#start();
  }

  get listed(): number {
    return this.#slots.length;
  }

  stop(): void {
    this.#stopped = true;
  }

  /** One committed unkeyed message of the ones ahead of every slot. */
  #unkeyedDone = (err: ChatError | undefined): void => {
    this.#inflight--;
    this.#done(err);
    if (this.#inflight === 0) this.#report();
  };

  /** Publishes the slots in order, up to one that waits for a read. */
  #start(): void {
    const slots = this.#slots;
    while (this.#gate === undefined && this.#next < slots.length) {
      const slot = slots[this.#next++]!;
      slot.state = STARTED;
      if (slot.key === "") {
        this.#ctx.hub.publish(
          slot.room,
          slot.bytes!,
          (err) => this.#finished(slot, err),
        );
        continue;
      }
      const ran = this.#ctx.idempotency!.post(
        slot.room,
        slot.user,
        slot.key,
        (finish, scope) => this.#publish(slot, finish, scope),
        (err) => this.#finished(slot, err),
      );
      if (!ran) { // it waits for a read: nothing about it has run yet
        this.#gate = slot;
        if (!this.#stopped) this.#hold.pause();
      }
    }
  }

  /** The first post of a slot's key in the window: to the hub. */
  #publish(slot: Slot, finish: PublishDone, scope: string): void {
    // The message's own id (its client's), kept with its key: a SendMessage
    // sent again with that key answers with it. Read here, for keyed
    // messages only (Upload's reader decodes no id); the bytes were checked.
    publishKeyed(
      this.#ctx,
      slot.room,
      slot.bytes!,
      scope,
      decodePost(slot.bytes!).id,
      Date.now(),
      finish,
    );
    // After the hub has it: the messages behind it go after it. Not from
    // here: this runs inside the index's post, which takes a throw for a
    // post refused (and frees its key) while this one is with the hub.
    if (this.#gate === slot) queueMicrotask(() => this.#release(slot));
  }

  #finished(slot: Slot, err: unknown): void {
    slot.state = FINISHED;
    slot.err = err;
    slot.bytes = undefined;
    this.#release(slot);
    this.#report();
  }

  /** Lets the messages behind `slot` go, if it held them. */
  #release(slot: Slot): void {
    if (this.#gate !== slot) return;
    this.#gate = undefined;
    if (!this.#stopped) this.#hold.resume();
    this.#start();
  }

  /** Reports the finished slots at the head, in order. */
  #report(): void {
    if (this.#inflight > 0) return;
    const slots = this.#slots;
    while (this.#head < slots.length && slots[this.#head]!.state === FINISHED) {
      const slot = slots[this.#head]!;
      slots[this.#head++] = undefined;
      this.#done(slot.err as ChatError | undefined);
    }
    if (this.#head === slots.length) slots.length = this.#head = this.#next = 0;
    else if (this.#head >= 1024 && this.#head * 2 >= slots.length) {
      // A stream that always has a message pending (a pipelining client,
      // an async store) never empties the list: the reported slots at its
      // head go now. In place: #start may be walking this array.
      slots.copyWithin(0, this.#head);
      slots.length -= this.#head;
      this.#next -= this.#head;
      this.#head = 0;
    }
  }
}
