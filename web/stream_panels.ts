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
import { newIdempotencyKey, passingCode } from "./send_retry.ts";
import { bridgeUrl } from "./ws_call.ts";

/**
 * An upload or Chat stream cut off on its way (the socket closed under it:
 * CANCELLED) or ended as a send that may pass (the edge or the core gone,
 * its store down: send_retry.ts), not refused: sent again, it may pass.
 */
const cutOff = (code: number) => code === Code.CANCELLED || passingCode(code);

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

  // Lines sent on the Chat stream and not echoed yet, by message id. A
  // stream cut off on its way leaves them here, and they go again with
  // their idempotency keys ahead of the next line: the ones the core had
  // stored are echoed, not stored twice.
  const unechoed = new Map<string, { content: string; key: string }>();
  const say = (session: BidiChat, id: string, content: string, key: string) => {
    unechoed.set(id, { content, key });
    session.say(content, id, key);
  };

  const openChat = (current: { user: string; room: string }) => {
    const session = startBidiChat(url, current, (message: Message) => {
      if (message.id.startsWith("echo_")) unechoed.delete(message.id.slice(5));
      logLine("received", `${message.user}: ${message.content}`);
    }, token());
    session.status.then((status) => {
      if (chat !== session) return;
      chat = undefined;
      if (status.code !== Code.OK && status.code !== Code.CANCELLED) {
        logLine(
          "ended",
          `Chat stream ended: code ${status.code} ${status.message}`,
        );
      }
      if (unechoed.size === 0) return;
      if (cutOff(status.code)) {
        logLine(
          "ended",
          `${unechoed.size} line(s) not echoed: sent again with the next one`,
        );
      } else unechoed.clear(); // refused: sent again, they would be too
    });
    return session;
  };

  $("bidi-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const input = $<HTMLInputElement>("bidi-input");
    const current = who();
    const content = input.value.trim();
    if (!current || !content) return;
    if (chat === undefined) {
      chat = openChat(current);
      const again = [...unechoed];
      unechoed.clear();
      for (const [id, line] of again) say(chat, id, line.content, line.key);
    }
    const key = newIdempotencyKey();
    say(chat, `${current.user}-${key}`, content, key);
    logLine("sent", `→ ${content}`);
    input.value = "";
  });

  // The upload that failed last: uploaded again as it was (same lines, user
  // and room), its lines carry the same idempotency keys, so the ones the
  // server stored before the failure are counted, not stored twice.
  let failed: { what: string; batchKey: string } | undefined;
  $("upload-button").addEventListener("click", async () => {
    const current = who();
    const text = $<HTMLTextAreaElement>("upload-text").value;
    const lines = text.split(/\r?\n/).filter((l) => l.trim());
    if (!current || lines.length === 0) return;
    const what = JSON.stringify([current.user, current.room, lines]);
    const batchKey = failed?.what === what
      ? failed.batchKey
      : newIdempotencyKey();
    failed = undefined;
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
      batchKey,
    );
    button.disabled = false;
    if (status.code !== Code.OK || !response) failed = { what, batchKey };
    if (status.code === Code.OK && response) {
      result.dataset.count = String(response.messageCount);
      result.textContent = `Server counted ${response.messageCount} messages` +
        (response.success ? "." : " (not successful).");
    } else {
      result.className = "failed";
      result.textContent =
        `Upload failed: code ${status.code} ${status.message}` +
        (cutOff(status.code)
          ? ". Upload again to send the rest: lines already stored count once."
          : "");
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
      unechoed.clear(); // the old room's lines
      for (const id of ["bidi-input", "bidi-send", "upload-button"]) {
        $<HTMLInputElement>(id).disabled = false;
      }
    },
  };
}
