/**
 * The chat's `Chat` stream for `--bidi`: opened on the first line, and again
 * after it breaks; lines it had not echoed when it broke are handed back to be
 * sent again, so a core restart loses none of them.
 *
 * @module
 */
import type { Message } from "../gen/chat_pb.ts";
import { formatError } from "./format.ts";
import type { Line } from "./outbox.ts";
import { callEnded, type ChatClient } from "./rpc.ts";

/** Where the stream reports. */
export interface BidiEvents {
  /** An echo (or any message) from the stream. */
  show(message: Message): void;
  /**
   * The stream broke before echoing `lines`; `reason` says why. Sent again
   * with their keys, the ones the core had stored are not stored again.
   */
  lost(lines: Line[], reason: string): void;
}

/** A Chat stream that reopens on demand. */
export interface BidiSender {
  /**
   * Writes one line with its idempotency key; returns the message id it
   * was given.
   */
  write(content: string, key: string): string;
  /**
   * Ends the current stream; the next write opens a new one. Its lines not
   * echoed go to `lost`, to be sent again with their keys.
   */
  reopen(): void;
  /** Lines written and not echoed yet. */
  unconfirmed(): number;
  close(): Promise<void>;
}

/** Creates the sender for `who`; nothing opens until the first write. */
export function bidiSender(
  client: ChatClient,
  who: { user: string; room: string },
  events: BidiEvents,
): BidiSender {
  let stream: ReturnType<ChatClient["chat"]> | undefined;
  let ended: Promise<unknown> = Promise.resolve();
  let closing = false;
  const unechoed = new Map<string, Line>();
  const open = () => {
    const s = client.chat();
    stream = s;
    s.on("data", (m: Message) => {
      unechoed.delete(m.id.replace(/^echo_/, ""));
      events.show(m);
    });
    s.on("error", (e) => {
      if (stream !== s || closing) return;
      stream = undefined;
      const lost = [...unechoed.values()];
      unechoed.clear();
      if (lost.length > 0) events.lost(lost, formatError(e));
    });
    ended = callEnded(s);
    return s;
  };
  return {
    write(content, key) {
      // The id follows from the key: a line sent again has the id the room
      // may already show it with (its first try stored, its echo lost).
      const id = `${who.user}-${key}`;
      unechoed.set(id, { content, key });
      (stream ?? open()).write({ id, ...who, content, idempotencyKey: key });
      return id;
    },
    reopen() {
      const s = stream;
      stream = undefined;
      s?.cancel();
      // Its error comes on a later tick, when it is no longer the current
      // stream: its lines not echoed are handed back now, with their keys
      // (else they stayed unconfirmed, never sent again).
      const lost = [...unechoed.values()];
      unechoed.clear();
      if (lost.length > 0) events.lost(lost, "ended after a reconnection");
    },
    unconfirmed: () => unechoed.size,
    async close() {
      closing = true;
      const s = stream;
      stream = undefined;
      s?.end();
      s?.cancel();
      await ended;
    },
  };
}
