/**
 * The two WebSocket-bridge panels: a bidi Chat echo stream and a bulk upload.
 *
 * Both need the user and room, so they wake up on `joined()`. The Chat stream
 * opens on the first send and is reopened on the next send after it ends, so a
 * dropped socket costs one status line, not a reload.
 *
 * @module
 */
import { type Message, MessageType } from "../gen/chat_pb.ts";
import { Code, RETRY_AFTER_MS } from "../protocol/status.ts";
import type { BridgeStatus } from "../protocol/ws_bridge.ts";
import { startBidiChat, uploadLines } from "./bridge_client.ts";
import { newIdempotencyKey, passingCode } from "./send_retry.ts";
import { bridgeUrl } from "./ws_call.ts";

/**
 * An upload or Chat stream cut off on its way (the socket closed under it:
 * CANCELLED) or ended as a send that may pass (the edge or the core gone,
 * its store down: send_retry.ts), not refused: sent again, it may pass.
 */
const cutOff = (code: number) => code === Code.CANCELLED || passingCode(code);

/**
 * A Chat stream's lines not echoed may pass sent again later: cut off, or
 * refused for the session's sake, not for the lines': a rate limit (its
 * RESOURCE_EXHAUSTED carries `retry-after-ms`; a message over the size
 * limit does not, and would be refused again), a token that has expired
 * (the page renews its own).
 */
const mayPassLater = (s: BridgeStatus) =>
  cutOff(s.code) || s.code === Code.UNAUTHENTICATED ||
  (s.code === Code.RESOURCE_EXHAUSTED && RETRY_AFTER_MS in s.trailers);

/** The core's echo of a line sent on Chat (its id: `echo_` and the line's). */
const isEcho = (m: Message) =>
  m.type === MessageType.SYSTEM && m.id.startsWith("echo_");

type Room = { user: string; room: string };
type Line = { content: string; key: string };

const sameRoom = (a: Room | undefined, b: Room) =>
  a?.user === b.user && a.room === b.room;

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
  // The page's Chat stream, if one is open.
  let chat: ReturnType<typeof openChat> | undefined;

  const logLine = (className: string, text: string) => {
    const item = document.createElement("li");
    item.className = className;
    item.textContent = text;
    log.append(item);
    while (log.childElementCount > 200) log.firstElementChild?.remove();
    log.scrollTop = log.scrollHeight;
  };

  // Lines of a Chat stream cut off on its way (or refused for a reason of
  // the session's: a rate limit, a token since renewed), by message id:
  // they go again with their idempotency keys ahead of the next line, in
  // the same room, and the ones the core had stored are echoed, not stored
  // twice. Each stream keeps its own lines not echoed yet until it ends.
  let carried: { room: Room; lines: Map<string, Line> } | undefined;
  const quoted = (lines: Map<string, Line>) =>
    [...lines.values()].map((l) =>
      JSON.stringify(
        l.content.length > 40 ? `${l.content.slice(0, 40)}…` : l.content,
      )
    ).join(", ");

  /** Lines that were to go again, left in a room no longer joined: said. */
  const dropCarried = () => {
    if (carried === undefined) return;
    logLine(
      "ended",
      `${carried.lines.size} line(s) to #${carried.room.room} not sent again: ${
        quoted(carried.lines)
      }`,
    );
    carried = undefined;
  };

  /**
   * Lines of an ended stream that may pass later: a stream open in the room
   * now takes them at once; else they wait for the next one, with any
   * waiting already.
   */
  const carry = (room: Room, lines: Map<string, Line>) => {
    if (chat && sameRoom(who(), room)) {
      for (const [id, line] of lines) chat.say(id, line);
    } else if (carried && sameRoom(carried.room, room)) {
      for (const [id, line] of lines) carried.lines.set(id, line);
    } else {
      if (carried) dropCarried();
      carried = { room, lines: new Map(lines) };
    }
  };

  const openChat = (current: Room) => {
    const unechoed = new Map<string, Line>();
    const session = startBidiChat(url, current, (message: Message) => {
      if (isEcho(message)) unechoed.delete(message.id.slice(5));
      logLine("received", `${message.user}: ${message.content}`);
    }, token());
    session.status.then((status) => {
      // Not the page's stream any more: hidden (cancelled by the page), or
      // ended when another room was joined.
      const ours = chat?.session === session;
      if (ours) chat = undefined;
      if (ours && status.code !== Code.OK && status.code !== Code.CANCELLED) {
        logLine(
          "ended",
          `Chat stream ended: code ${status.code} ${status.message}`,
        );
      }
      if (unechoed.size === 0) return;
      // Joined elsewhere since (not while a join is on its way: who() is
      // then unset, and joined() says what it drops).
      const now = who();
      const elsewhere = now !== undefined && !sameRoom(now, current);
      if (!elsewhere && mayPassLater(status)) {
        if (ours) {
          const wait = status.trailers[RETRY_AFTER_MS];
          logLine(
            "ended",
            `${unechoed.size} line(s) not echoed: sent again with the next one` +
              (wait === undefined
                ? ""
                : ` (the rate limit takes more in ${
                  Math.ceil(Number(wait) / 1000)
                } s)`),
          );
        }
        carry(current, unechoed);
        return;
      }
      // Refused for the lines themselves (sent again, they would be too),
      // or left behind in another room: said, not sent again.
      logLine(
        "ended",
        `${unechoed.size} line(s) not echoed and not sent again` +
          (elsewhere ? ` (to #${current.room})` : "") +
          `: ${quoted(unechoed)}`,
      );
    });
    return {
      session,
      /** Ends the stream; its lines not echoed wait for the next one. */
      cancel() {
        session.cancel();
        // Now, not when the stream's end comes in: that may be after the
        // next line opened a new stream (a page restored from the
        // back/forward cache resumes its tasks then), which would send
        // these after that newer line.
        if (unechoed.size === 0) return;
        carry(current, unechoed);
        unechoed.clear();
      },
      say(id: string, line: Line) {
        unechoed.set(id, line);
        session.say(line.content, id, line.key);
      },
    };
  };

  $("bidi-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const input = $<HTMLInputElement>("bidi-input");
    const current = who();
    const content = input.value.trim();
    if (!current || !content) return;
    if (chat === undefined) {
      chat = openChat(current);
      const again = carried;
      carried = undefined;
      for (const [id, line] of again?.lines ?? []) chat.say(id, line);
    }
    const key = newIdempotencyKey();
    chat.say(`${current.user}-${key}`, { content, key });
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
      const ended = chat;
      chat = undefined;
      ended?.cancel();
    },
    /** Enables the panels once a room is joined; ends a Chat stream of the old room. */
    joined() {
      // The old stream ends after the lines sent on it (its end says if
      // some were not echoed); lines waiting to go again stay only for the
      // same user and room.
      chat?.session.end();
      chat = undefined;
      if (carried && !sameRoom(who(), carried.room)) dropCarried();
      for (const id of ["bidi-input", "bidi-send", "upload-button"]) {
        $<HTMLInputElement>(id).disabled = false;
      }
    },
  };
}
