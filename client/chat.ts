/**
 * The interactive chat session behind `deno task chat`: stdin lines go to a
 * room, the room is shown live, end of input leaves.
 *
 * Joining shows the room's recent history. When the subscription drops after
 * the join (core restart, network), the session says so, reconnects with
 * backoff (0.5 s doubling to 5 s) and resumes from the last offset it showed:
 * the server replays what was missed, and the cursor (`room_cursor.ts`) drops any
 * duplicate. A line that cannot be sent (disconnected, core down) is reported
 * as not sent and retried until it goes through; one still unsent when the
 * session ends is reported again and makes the exit code 1. Nothing typed is
 * dropped silently.
 *
 * On end of input the session waits (up to `flushMs`) until the history it
 * asked for and each message it sent have come back on the subscription, so
 * piping a script (or nothing) into the client shows the whole conversation
 * before it exits; then it cancels its streams.
 * The same path runs for Ctrl-D at a terminal and for an abort signal
 * (Ctrl-C), so leaving is always clean.
 *
 * @module
 */
import { type Message, MessageType } from "../gen/chat_pb.ts";
import { bidiSender } from "./bidi_sender.ts";
import { formatMessage, formatNote } from "./format.ts";
import { Outbox } from "./outbox.ts";
import { followRoom } from "./room_follower.ts";
import { type ChatClient, deadlineIn } from "./rpc.ts";

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

/** Runs one session; resolves to the exit code (0 clean, 1 on any error). */
export async function runChatSession(
  client: ChatClient,
  opts: ChatSessionOptions,
  io: ChatIO,
): Promise<number> {
  const timeoutMs = opts.callTimeoutMs ?? 10_000;
  const minRetryMs = opts.minRetryMs ?? 500;
  const maxRetryMs = opts.maxRetryMs ?? 5000;
  const color = opts.color ?? false;
  const note = (text: string) => io.out(formatNote(text, color));
  const warn = (text: string) => io.err(formatNote(text, color));
  const leave = new AbortController();
  io.signal?.addEventListener("abort", () => leave.abort(), { once: true });

  // Ids of our messages sent, and of the room messages shown: at the end,
  // the session waits until each of ours has come back from the room (an
  // echo of the Chat stream is not enough: it can come before the message
  // is stored and broadcast).
  const seen = new Set<string>();
  const pending = new Set<string>();
  let progress = () => {};
  const show = (m: Message) => {
    io.out(formatMessage(m, color));
    // The server's echoes (SYSTEM, `echo_<id>`) are not room messages; a
    // user's own id may start with "echo_" too (`--bidi`: `<user>-<key>`).
    const echo = m.type === MessageType.SYSTEM && m.id.startsWith("echo_");
    if (!echo) seen.add(m.id);
    progress();
  };

  let fatal: string | undefined;
  const who = { room: opts.room, user: opts.user };
  const bidi = opts.bidi
    ? bidiSender(client, who, {
      show,
      lost(lines, reason) {
        warn(
          `the Chat stream broke (${reason}); ${lines.length} ` +
            `unconfirmed message(s) will be resent`,
        );
        outbox.requeue(lines);
      },
    })
    : undefined;
  const follower = followRoom(client, {
    ...who,
    history: opts.history ?? 0,
    timeoutMs,
    minRetryMs,
    maxRetryMs,
    signal: leave.signal,
  }, {
    show,
    note,
    resumed() {
      bidi?.reopen();
      outbox.retryNow();
    },
    fatal(reason) {
      fatal = reason;
      io.err(`error: ${reason}`);
      leave.abort();
    },
  });
  const outbox = new Outbox({
    async send(content, idempotencyKey) {
      if (bidi) return void pending.add(bidi.write(content, idempotencyKey));
      const res = await client.sendMessage(
        { ...who, content, idempotencyKey },
        {
          deadline: deadlineIn(timeoutMs),
        },
      );
      pending.add(res.messageId);
    },
    canSend: follower.connected,
    minRetryMs,
    maxRetryMs,
    warn,
    note,
    changed: () => progress(),
  });

  const first = await follower.joined;
  if (!first.ok) {
    io.err(`error: ${first.reason}`);
    leave.abort();
    await follower.done;
    return 1;
  }
  io.out(
    formatNote(`joined ${opts.room} as ${opts.user} (Ctrl-D to leave)`, color),
  );

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
    if (content !== "") outbox.push(content);
  }

  // Wait for the outbox to empty, own messages and the history being
  // replayed to show, up to flushMs.
  await new Promise<void>((resolve) => {
    const done = () =>
      follower.caughtUp() && outbox.idle &&
      (bidi?.unconfirmed() ?? 0) === 0 &&
      [...pending].every((id) => seen.has(id));
    if (done()) return resolve();
    const t = setTimeout(resolve, opts.flushMs);
    progress = () => done() && (clearTimeout(t), resolve());
  });
  progress = () => {};
  leave.abort();
  const unsent = outbox.close();
  for (const content of unsent) warn(`not sent: "${content}"`);
  await Promise.all([follower.done, bidi?.close()]);
  io.out(formatNote(`left ${opts.room}`, color));
  return unsent.length > 0 || outbox.refused > 0 || fatal ? 1 : 0;
}
