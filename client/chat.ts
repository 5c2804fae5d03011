/**
 * The interactive chat session behind `deno task chat`: stdin lines go to a
 * room, the room is shown live, end of input leaves.
 *
 * On end of input the session waits (up to `flushMs`) until each message it
 * sent has come back on the subscription, so piping a script into the client
 * shows the whole conversation before it exits; then it cancels its streams.
 * The same path runs for Ctrl-D at a terminal and for an abort signal
 * (Ctrl-C), so leaving is always clean.
 *
 * @module
 */
import type { Message } from "../gen/chat_pb.ts";
import { callEnded, type ChatClient, deadlineIn } from "./rpc.ts";
import { formatError, formatMessage } from "./format.ts";

/** What a session needs besides the client. */
export interface ChatSessionOptions {
  room: string;
  user: string;
  /** Send over one `Chat` stream instead of a `SendMessage` per line. */
  bidi: boolean;
  /** After end of input, max wait for own messages to come back. */
  flushMs: number;
  /** Deadline of each SendMessage and of the wait for the welcome. */
  callTimeoutMs?: number;
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
  const timeout = opts.callTimeoutMs ?? 10_000;
  const seen = new Set<string>();
  const pending = new Set<string>();
  let failed = false;
  let onSeen = () => {};
  const show = (m: Message) => {
    io.out(formatMessage(m));
    seen.add(m.id.startsWith("echo_") ? m.id.slice(5) : m.id);
    onSeen();
  };

  const sub = client.subscribeMessages({ room: opts.room, user: opts.user });
  let leaving = false;
  let subError: unknown;
  sub.on("error", (e) => {
    if (!leaving) subError = e;
  });
  const subEnded = callEnded(sub);
  const first = await new Promise<boolean>((resolve) => {
    const t = setTimeout(() => resolve(false), timeout);
    sub.once("data", () => (clearTimeout(t), resolve(true)));
    subEnded.then(() => (clearTimeout(t), resolve(false)));
    sub.on("data", show);
  });
  if (!first) {
    io.err(
      `error: ${subError ? formatError(subError) : "no welcome from server"}`,
    );
    leaving = true;
    sub.cancel();
    await subEnded;
    return 1;
  }
  io.out(`joined ${opts.room} as ${opts.user} (Ctrl-D to leave)`);

  const bidi = opts.bidi ? client.chat() : undefined;
  let bidiError: unknown;
  const bidiEnded = bidi ? callEnded(bidi) : Promise.resolve(undefined);
  bidi?.on("data", show);
  bidi?.on("error", (e) => {
    if (!leaving) bidiError = e;
  });

  // Ends input early when a stream breaks or the caller aborts.
  let endedEarly = false;
  const broken = new Promise<"broken">((resolve) => {
    subEnded.then(() => {
      endedEarly = !leaving;
      resolve("broken");
    });
    bidiEnded.then((s) => s && resolve("broken"));
    io.signal?.addEventListener("abort", () => resolve("broken"));
  });
  const it = io.lines[Symbol.asyncIterator]();
  let n = 0;
  while (true) {
    const next = await Promise.race([it.next(), broken]);
    if (next === "broken" || next.done) break;
    const content = next.value.trim();
    if (content === "") continue;
    if (bidi) {
      const id = `${opts.user}-${Date.now().toString(36)}-${++n}`;
      pending.add(id);
      bidi.write({ id, user: opts.user, room: opts.room, content });
      continue;
    }
    try {
      const res = await client.sendMessage(
        { user: opts.user, room: opts.room, content },
        { deadline: deadlineIn(timeout) },
      );
      pending.add(res.messageId);
    } catch (e) {
      failed = true;
      io.err(`send failed: ${formatError(e)}`);
    }
  }

  bidi?.end();
  await new Promise<void>((resolve) => {
    const done = () => [...pending].every((id) => seen.has(id));
    if (done() || subError || bidiError) return resolve();
    const t = setTimeout(resolve, opts.flushMs);
    onSeen = () => done() && (clearTimeout(t), resolve());
  });
  onSeen = () => {};
  leaving = true;
  const err = subError ?? bidiError;
  if (err) io.err(`error: ${formatError(err)}`);
  else if (endedEarly) io.err("error: the server ended the subscription");
  sub.cancel();
  bidi?.cancel();
  await Promise.all([subEnded, bidiEnded]);
  io.out(`left ${opts.room}`);
  return failed || err || endedEarly ? 1 : 0;
}
