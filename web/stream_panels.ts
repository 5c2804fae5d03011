/**
 * The two WebSocket-bridge panels: a bidi Chat echo stream and a bulk upload.
 *
 * Both need the user and room, so they wake up on `joined()`. The Chat stream
 * opens on the first send and is reopened on the next send after it ends, so a
 * dropped socket costs one status line, not a reload.
 *
 * @module
 */
import type { Message } from "../gen/chat_pb.ts";
import { Code } from "../protocol/status.ts";
import { type BidiChat, startBidiChat, uploadLines } from "./bridge_client.ts";
import { bridgeUrl } from "./ws_call.ts";

const $ = <T extends HTMLElement = HTMLElement>(id: string) =>
  document.getElementById(id) as T;

/**
 * Wires the panels; `who()` is the joined user and room, if any, and
 * `token()` the bearer token of the session ("" for none).
 */
export function setUpStreamPanels(
  who: () => { user: string; room: string } | undefined,
  token: () => string,
) {
  const url = bridgeUrl(location);
  const log = $("bidi-log");
  let chat: BidiChat | undefined;

  const logLine = (className: string, text: string) => {
    const item = document.createElement("li");
    item.className = className;
    item.textContent = text;
    log.append(item);
    while (log.childElementCount > 200) log.firstElementChild?.remove();
    log.scrollTop = log.scrollHeight;
  };

  const openChat = (current: { user: string; room: string }) => {
    const session = startBidiChat(url, current, (message: Message) => {
      logLine("received", `${message.user}: ${message.content}`);
    }, token());
    session.status.then((status) => {
      if (chat === session) chat = undefined;
      if (status.code !== Code.OK && status.code !== Code.CANCELLED) {
        logLine(
          "ended",
          `Chat stream ended: code ${status.code} ${status.message}`,
        );
      }
    });
    return session;
  };

  $("bidi-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const input = $<HTMLInputElement>("bidi-input");
    const current = who();
    if (!current || !input.value.trim()) return;
    chat ??= openChat(current);
    chat.say(input.value.trim());
    logLine("sent", `→ ${input.value.trim()}`);
    input.value = "";
  });

  $("upload-button").addEventListener("click", async () => {
    const current = who();
    const lines = $<HTMLTextAreaElement>("upload-text").value.split(/\r?\n/)
      .filter((l) => l.trim());
    if (!current || lines.length === 0) return;
    const button = $<HTMLButtonElement>("upload-button");
    const progress = $<HTMLProgressElement>("upload-progress");
    const result = $<HTMLOutputElement>("upload-result");
    button.disabled = true;
    result.className = "";
    result.textContent = `Uploading ${lines.length} lines…`;
    progress.max = lines.length;
    progress.value = 0;
    const { response, status } = await uploadLines(
      url,
      current,
      lines,
      (sent, total) => {
        progress.value = sent;
        result.textContent = `Sent ${sent} of ${total}…`;
      },
      token(),
    );
    button.disabled = false;
    if (status.code === Code.OK && response) {
      result.dataset.count = String(response.messageCount);
      result.textContent = `Server counted ${response.messageCount} messages` +
        (response.success ? "." : " (not successful).");
    } else {
      result.className = "failed";
      result.textContent =
        `Upload failed: code ${status.code} ${status.message}`;
    }
  });

  return {
    /**
     * The page is hidden: the Chat stream ends (rather than be cut off by
     * the browser as it caches the page); the next send opens a new one.
     */
    hidden() {
      chat?.cancel();
      chat = undefined;
    },
    /** Enables the panels once a room is joined; ends a Chat stream of the old room. */
    joined() {
      chat?.end();
      chat = undefined;
      for (const id of ["bidi-input", "bidi-send", "upload-button"]) {
        $<HTMLInputElement>(id).disabled = false;
      }
    },
  };
}
