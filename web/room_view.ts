/**
 * Renders room messages into a list, styled by type (CHAT, JOIN, LEAVE, SYSTEM).
 *
 * Only the newest `MAX_ITEMS` stay in the DOM: a busy room would otherwise grow
 * the page without bound. Text goes in with `textContent`, never as HTML, since
 * every field is written by some other user.
 *
 * @module
 */
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { type Message, MessageType } from "../gen/chat_pb.ts";

const MAX_ITEMS = 500;

const TYPE_CLASS: Record<MessageType, string> = {
  [MessageType.CHAT]: "msg-chat",
  [MessageType.JOIN]: "msg-join",
  [MessageType.LEAVE]: "msg-leave",
  [MessageType.SYSTEM]: "msg-system",
};

/** A scrolling message list. */
export class RoomView {
  #list: HTMLElement;

  constructor(list: HTMLElement) {
    this.#list = list;
  }

  /** Appends a message from the server. */
  add(message: Message, self: string): void {
    const item = document.createElement("li");
    item.className = TYPE_CLASS[message.type] ?? "msg-chat";
    if (message.type === MessageType.CHAT && message.user === self) {
      item.classList.add("mine");
    }
    item.dataset.type = MessageType[message.type] ?? "CHAT";
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

  clear(): void {
    this.#list.replaceChildren();
  }

  #append(item: HTMLElement): void {
    const stick = this.#list.scrollTop + this.#list.clientHeight >=
      this.#list.scrollHeight - 8;
    this.#list.append(item);
    while (this.#list.childElementCount > MAX_ITEMS) {
      this.#list.firstElementChild?.remove();
    }
    // Follow new messages only if the reader was already at the bottom.
    if (stick) this.#list.scrollTop = this.#list.scrollHeight;
  }
}

function span(className: string, text: string): HTMLElement {
  const el = document.createElement("span");
  el.className = className;
  el.textContent = text;
  return el;
}
