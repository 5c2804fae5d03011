/**
 * Renders room messages into a list, styled by type (CHAT, JOIN, LEAVE, SYSTEM).
 *
 * Only the newest `MAX_ITEMS` stay in the DOM: a busy room would otherwise grow
 * the page without bound. The cap is not silent: once lines are dropped from
 * the top, `capNote` says how many. Text goes in with `textContent`, never as
 * HTML, since every field is written by some other user. A message that could
 * not be sent stays in the list, marked, with a Retry button, until it goes
 * through.
 *
 * @module
 */
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { type Message, MessageType } from "../gen/chat_pb.ts";

/** The most lines the list keeps. */
export const MAX_ITEMS = 500;

const TYPE_CLASS: Record<MessageType, string> = {
  [MessageType.CHAT]: "msg-chat",
  [MessageType.JOIN]: "msg-join",
  [MessageType.LEAVE]: "msg-leave",
  [MessageType.SYSTEM]: "msg-system",
};

/** A scrolling message list. */
export class RoomView {
  #list: HTMLElement;
  #capNote: HTMLElement;
  #dropped = 0;
  #pending: HTMLElement[] = [];
  #flushTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(list: HTMLElement, capNote: HTMLElement) {
    this.#list = list;
    this.#capNote = capNote;
    this.#showCap();
  }

  /** Appends a message from the server. */
  add(message: Message, self: string): void {
    const item = document.createElement("li");
    item.className = TYPE_CLASS[message.type] ?? "msg-chat";
    if (message.type === MessageType.CHAT && message.user === self) {
      item.classList.add("mine");
    }
    item.dataset.type = MessageType[message.type] ?? "CHAT";
    // The welcome's offset is the room's last one, not a line of its own:
    // marked, it would show as a second copy of that line.
    if (message.offset > 0n && message.type !== MessageType.SYSTEM) {
      item.dataset.offset = String(message.offset);
    }
    const time = message.timestamp
      ? timestampDate(message.timestamp)
      : new Date();
    item.append(
      span("time", time.toLocaleTimeString()),
      span("user", message.type === MessageType.CHAT ? message.user : ""),
      span("content", message.content),
    );
    this.#append(item);
  }

  /** Appends a line written by the page itself (connection lost, reconnected). */
  note(text: string): void {
    const item = document.createElement("li");
    item.className = "msg-local";
    item.dataset.type = "LOCAL";
    item.append(
      span("time", new Date().toLocaleTimeString()),
      span("content", text),
    );
    this.#append(item);
  }

  /**
   * Appends a message that was not sent, with a Retry button that calls
   * `send`; the line goes away once `send` resolves true. Returns a retry
   * the page calls by itself after reconnecting.
   */
  unsent(
    content: string,
    reason: string,
    send: () => Promise<string | undefined>,
  ): () => Promise<boolean> {
    const item = document.createElement("li");
    item.className = "msg-unsent";
    item.dataset.type = "UNSENT";
    const why = span("reason", `Not sent (${reason}):`);
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = "Retry";
    item.append(why, span("content", content), button);
    this.#append(item);
    let busy = false;
    let sent = false;
    const retry = async () => {
      if (sent) return true;
      if (busy) return false;
      busy = true;
      button.disabled = true;
      button.textContent = "Sending…";
      const error = await send();
      busy = false;
      if (error === undefined) {
        sent = true;
        item.remove();
        return true;
      }
      why.textContent = `Not sent (${error}):`;
      button.disabled = false;
      button.textContent = "Retry";
      return false;
    };
    button.addEventListener("click", retry);
    return retry;
  }

  clear(): void {
    this.#list.replaceChildren();
    this.#pending.length = 0;
    this.#dropped = 0;
    this.#showCap();
  }

  #showCap(): void {
    this.#capNote.dataset.dropped = String(this.#dropped);
    this.#capNote.textContent = this.#dropped === 0
      ? `Shows the newest ${MAX_ITEMS} lines.`
      : `Showing the newest ${MAX_ITEMS} lines; ${this.#dropped} older not shown.`;
  }

  /**
   * Queues a line; lines that arrive together (a replay, a busy room) go into
   * the list in one batch, so the page lays out once per batch rather than
   * once per message. The queue is capped like the list.
   */
  #append(item: HTMLElement): void {
    this.#pending.push(item);
    if (this.#pending.length > MAX_ITEMS) {
      this.#dropped += this.#pending.length - MAX_ITEMS;
      this.#pending.splice(0, this.#pending.length - MAX_ITEMS);
    }
    this.#flushTimer ??= setTimeout(() => this.#flush(), 0);
  }

  #flush(): void {
    this.#flushTimer = undefined;
    const list = this.#list;
    const stick = list.scrollTop + list.clientHeight >= list.scrollHeight - 8;
    list.append(...this.#pending.splice(0));
    const over = list.childElementCount - MAX_ITEMS;
    for (let i = 0; i < over; i++) list.firstElementChild?.remove();
    if (over > 0) this.#dropped += over;
    this.#showCap();
    // Follow new messages only if the reader was already at the bottom.
    if (stick) list.scrollTop = list.scrollHeight;
  }
}

function span(className: string, text: string): HTMLElement {
  const el = document.createElement("span");
  el.className = className;
  el.textContent = text;
  return el;
}
