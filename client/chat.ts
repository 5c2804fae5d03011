/**
 * The interactive chat session behind `deno task chat`: stdin lines go to a
 * room, the room is shown live, end of input leaves.
 *
 * Joining shows the room's recent history. When the subscription drops after
 * the join (core restart, network), the session says so, reconnects with
 * backoff (0.5 s doubling to 5 s) and resumes from the last offset it showed:
 * the server replays what was missed, and the {@link RoomCursor} drops any
 * duplicate. A line that cannot be sent (disconnected, core down) is reported
 * as not sent and retried until it goes through; one still unsent when the
 * session ends is reported again and makes the exit code 1. Nothing typed is
 * dropped silently.
 *
 * On end of input the session waits (up to `flushMs`) until each message it
 * sent has come back on the subscription, so piping a script into the client
 * shows the whole conversation before it exits; then it cancels its streams.
 * The same path runs for Ctrl-D at a terminal and for an abort signal
 * (Ctrl-C), so leaving is always clean.
 *
 * @module
 */
import { status as Status } from "@grpc/grpc-js";
import type { Message } from "../gen/chat_pb.ts";
import { callEnded, type ChatClient, deadlineIn } from "./rpc.ts";
import { formatError, formatMessage, formatNote } from "./format.ts";
import { RoomCursor, type WelcomeOutcome } from "./room_cursor.ts";

/** What a session needs besides the client. */
export interface ChatSessionOptions {
  room: string;
  user: string;
  /** Send over one `Chat` stream instead of a `SendMessage` per line. */
  bidi: boolean;
  /** After end of input, max wait for own messages to come back. */
  flushMs: number;
  /** Recent messages to show on join. */
  history?: number;
  /** Colour users, system lines and notes. */
  color?: boolean;
  /** Deadline of each SendMessage and of the wait for the welcome. */
  callTimeoutMs?: number;
  /** First reconnect delay; doubles per failed attempt up to `maxRetryMs`. */
  minRetryMs?: number;
  maxRetryMs?: number;
}

/** The session's terminal. */
export interface ChatIO {
  lines: AsyncIterable<string>;
  out: (line: string) => void;
  err: (line: string) => void;
  /** Aborting leaves as if input had ended. */
  signal?: AbortSignal;
}

/** Splits a byte stream into lines (without `\n` / `\r\n`). */
export async function* readLines(
  stream: ReadableStream<Uint8Array>,
): AsyncGenerator<string> {
  let buf = "";
  for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
    buf += chunk;
    let nl: number;
    while ((nl = buf.indexOf("\n")) >= 0) {
      yield buf.slice(0, nl).replace(/\r$/, "");
      buf = buf.slice(nl + 1);
    }
  }
  if (buf !== "") yield buf;
}

/** Codes after which the same send may succeed later. */
const RETRYABLE = new Set<number>([
  Status.UNAVAILABLE,
  Status.DEADLINE_EXCEEDED,
  Status.CANCELLED,
]);

/**
 * Codes that no retry can fix (the token, the user or the request is wrong):
 * a subscription that ends with one of them ends the session.
 */
const FATAL = new Set<number>([
  Status.UNAUTHENTICATED,
  Status.PERMISSION_DENIED,
  Status.INVALID_ARGUMENT,
  Status.UNIMPLEMENTED,
]);

/** Runs one session; resolves to the exit code (0 clean, 1 on any error). */
export async function runChatSession(
  client: ChatClient,
  opts: ChatSessionOptions,
  io: ChatIO,
): Promise<number> {
  const timeout = opts.callTimeoutMs ?? 10_000;
  const minRetry = opts.minRetryMs ?? 500;
  const maxRetry = opts.maxRetryMs ?? 5000;
  const color = opts.color ?? false;
  const note = (text: string) => io.out(formatNote(text, color));
  const warn = (text: string) => io.err(formatNote(text, color));
  const leave = new AbortController();
  io.signal?.addEventListener("abort", () => leave.abort(), { once: true });

  const cursor = new RoomCursor(opts.history ?? 0);
  const seen = new Set<string>();
  const pending = new Set<string>();
  let failed = false;
  let onProgress = () => {};
  const show = (m: Message) => {
    io.out(formatMessage(m, color));
    seen.add(m.id.startsWith("echo_") ? m.id.slice(5) : m.id);
    onProgress();
  };

  // --- the room subscription, reopened after every drop ---
  let connected = false;
  let fatal: string | undefined;
  let current: ReturnType<ChatClient["subscribeMessages"]> | undefined;
  let joined!: (ok: boolean, reason?: string) => void;
  const firstJoin = new Promise<{ ok: boolean; reason?: string }>((r) =>
    joined = (ok, reason) => r({ ok, reason })
  );
  let onReconnect = () => {};
  const following = (async () => {
    let delay = minRetry;
    let everJoined = false;
    let catchingUp = false;
    while (!leave.signal.aborted) {
      const call = client.subscribeMessages({
        room: opts.room,
        user: opts.user,
        ...cursor.request(),
      });
      current = call;
      const ended = callEnded(call);
      let welcomed = false;
      let refetch = false;
      let reason = "the server ended the subscription";
      const noWelcome = setTimeout(() => {
        reason = "no welcome from server";
        call.cancel();
      }, timeout);
      try {
        for await (const m of call as AsyncIterable<Message>) {
          if (refetch) continue;
          if (welcomed) {
            const verdict = cursor.accept(m);
            if (verdict === "duplicate") continue;
            if (verdict === "refetch") {
              // The server skipped messages for us (too slow): resubscribe
              // from the last one shown, at once; this stream's rest is moot.
              refetch = true;
              call.cancel();
              continue;
            }
            if (verdict !== "show") {
              note(
                `-- ${verdict.gap} message(s) missing here (no longer in the room's history)`,
              );
            }
            show(m);
            continue;
          }
          welcomed = true;
          clearTimeout(noWelcome);
          delay = minRetry;
          connected = true;
          const outcome = cursor.welcome(m);
          if (!everJoined) {
            everJoined = true;
            show(m);
            joined(true);
          } else if (!catchingUp) {
            note(describeResume(opts.room, outcome));
            onReconnect();
          }
          catchingUp = false;
        }
      } catch (err) {
        if (reason !== "no welcome from server") reason = formatError(err);
        if (FATAL.has((err as { code?: number }).code ?? -1)) fatal = reason;
      }
      clearTimeout(noWelcome);
      connected = false;
      await ended;
      if (leave.signal.aborted) break;
      if (!everJoined) return joined(false, reason);
      if (fatal) {
        io.err(`error: ${fatal}`);
        leave.abort();
        break;
      }
      if (refetch) {
        catchingUp = true;
        continue;
      }
      note(
        `-- connection lost (${reason}); reconnecting in ${secs(delay)} s`,
      );
      await sleep(delay, leave.signal);
      delay = Math.min(delay * 2, maxRetry);
    }
  })();

  const first = await Promise.race([
    firstJoin,
    new Promise<{ ok: false; reason: string }>((r) =>
      leave.signal.addEventListener(
        "abort",
        () => r({ ok: false, reason: "interrupted" }),
        { once: true },
      )
    ),
  ]);
  if (!first.ok) {
    io.err(`error: ${first.reason}`);
    leave.abort();
    current?.cancel();
    await following;
    return 1;
  }
  io.out(
    formatNote(`joined ${opts.room} as ${opts.user} (Ctrl-D to leave)`, color),
  );

  // --- sending: an outbox that retries what did not go through ---
  const outbox: { content: string; warned: boolean }[] = [];
  let sending = false;
  let retryTimer: ReturnType<typeof setTimeout> | undefined;
  let retryDelay = minRetry;
  const bidi = opts.bidi ? openBidi() : undefined;

  const drain = async () => {
    if (sending) return;
    sending = true;
    clearTimeout(retryTimer);
    while (outbox.length > 0 && !leave.signal.aborted) {
      const item = outbox[0];
      try {
        if (!connected) {
          throw { code: Status.UNAVAILABLE, details: "disconnected" };
        }
        if (bidi) pending.add(bidi.write(item.content));
        else {
          const res = await client.sendMessage(
            { user: opts.user, room: opts.room, content: item.content },
            { deadline: deadlineIn(timeout) },
          );
          pending.add(res.messageId);
        }
        outbox.shift();
        retryDelay = minRetry;
        if (item.warned) note(`-- sent: "${item.content}"`);
      } catch (err) {
        const code = (err as { code?: number }).code ?? -1;
        if (!RETRYABLE.has(code)) {
          outbox.shift();
          failed = true;
          warn(`not sent: "${item.content}" (${formatError(err)})`);
          continue;
        }
        if (!item.warned) {
          item.warned = true;
          warn(
            `not sent yet: "${item.content}" (${formatError(err)}); will retry`,
          );
        }
        retryTimer = setTimeout(drain, retryDelay);
        retryDelay = Math.min(retryDelay * 2, maxRetry);
        break;
      }
    }
    sending = false;
    onProgress();
  };
  onReconnect = () => {
    retryDelay = minRetry;
    bidi?.reopen();
    drain();
  };

  // The Chat stream, opened lazily and again after it breaks; messages it
  // had not echoed go back to the outbox.
  function openBidi() {
    let stream: ReturnType<ChatClient["chat"]> | undefined;
    let ended: Promise<unknown> = Promise.resolve();
    const unechoed = new Map<string, string>();
    let n = 0;
    const open = () => {
      const s = client.chat();
      stream = s;
      s.on("data", (m: Message) => {
        unechoed.delete(m.id.replace(/^echo_/, ""));
        show(m);
      });
      s.on("error", (e) => {
        if (stream !== s || leave.signal.aborted) return;
        stream = undefined;
        const lost = [...unechoed.values()];
        unechoed.clear();
        if (lost.length > 0) {
          warn(
            `the Chat stream broke (${formatError(e)}); ${lost.length} ` +
              `unconfirmed message(s) will be resent`,
          );
          outbox.unshift(...lost.map((content) => ({ content, warned: true })));
        }
      });
      ended = callEnded(s);
      return s;
    };
    return {
      write(content: string): string {
        const id = `${opts.user}-${Date.now().toString(36)}-${++n}`;
        unechoed.set(id, content);
        (stream ?? open()).write({
          id,
          user: opts.user,
          room: opts.room,
          content,
        });
        return id;
      },
      reopen() {
        stream?.cancel();
        stream = undefined;
      },
      unconfirmed: () => unechoed.size,
      async close() {
        stream?.end();
        const s = stream;
        stream = undefined;
        s?.cancel();
        await ended;
      },
    };
  }

  const it = io.lines[Symbol.asyncIterator]();
  const stop = new Promise<"stop">((resolve) =>
    leave.signal.addEventListener("abort", () => resolve("stop"), {
      once: true,
    })
  );
  while (true) {
    const next = await Promise.race([it.next(), stop]);
    if (next === "stop" || next.done) break;
    const content = next.value.trim();
    if (content === "") continue;
    outbox.push({ content, warned: false });
    drain();
  }

  // Wait for the outbox to empty and own messages to show, up to flushMs.
  await new Promise<void>((resolve) => {
    const done = () =>
      outbox.length === 0 && !sending && (bidi?.unconfirmed() ?? 0) === 0 &&
      [...pending].every((id) => seen.has(id));
    if (done()) return resolve();
    const t = setTimeout(resolve, opts.flushMs);
    onProgress = () => done() && (clearTimeout(t), resolve());
  });
  onProgress = () => {};
  clearTimeout(retryTimer);
  leave.abort();
  for (const item of outbox.splice(0)) {
    failed = true;
    warn(`not sent: "${item.content}"`);
  }
  current?.cancel();
  await Promise.all([following, bidi?.close()]);
  io.out(formatNote(`left ${opts.room}`, color));
  return failed || fatal ? 1 : 0;
}

/** The line that says how a reconnection went. */
function describeResume(room: string, outcome: WelcomeOutcome): string {
  switch (outcome.kind) {
    case "resumed":
      return outcome.missed === 0n
        ? `-- reconnected to ${room}: nothing missed`
        : `-- reconnected to ${room}: resuming, ${outcome.missed} missed message(s) follow`;
    case "reset":
      return `-- reconnected to ${room}, but the server lost the room's history: messages sent meanwhile may be missing`;
    default:
      return `-- reconnected to ${room}; the server keeps no history: messages sent meanwhile are missing`;
  }
}

function secs(ms: number): string {
  return (ms / 1000).toFixed(1);
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
  });
}
