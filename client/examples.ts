/**
 * The seed's five client examples (unary, subscribe, upload, bidi chat,
 * metrics), with shortened waits, each ending in a one-line verdict.
 *
 * The seed's Go client runs them and never exits; here every example is
 * bounded (a deadline or a guard timer), the subscriber checks that it saw
 * the messages the upload and chat examples posted, and the caller gets one
 * {@link ExampleResult} per RPC so it can print a summary and an exit code.
 *
 * @module
 */
import { MessageType } from "../gen/chat_pb.ts";
import { callEnded, type ChatClient, deadlineIn } from "./rpc.ts";
import { formatError, formatIso, formatMessage } from "./format.ts";
import { chatExample, metricsExample } from "./examples_streams.ts";

/**
 * Who posts and subscribes, then waits and counts; the seed's values are
 * 200 ms, 3 s, 10, 2 s, 10.
 */
export interface ExampleOptions {
  /**
   * The user every example posts and subscribes as; "" plays the seed's
   * Alice (unary, subscriber), Bob (upload) and Charlie (bidi chat). A core
   * with auth lets a token speak only for its own user.
   */
  user: string;
  /** Pause between the upload's five batch messages. */
  batchDelayMs: number;
  /** Pause between the bidi chat's messages. */
  chatIntervalMs: number;
  /** How many messages the bidi chat sends. */
  chatCount: number;
  /** `interval_seconds` asked of StreamMetrics. */
  metricsIntervalSeconds: number;
  /** How many metrics to read before cancelling. */
  metricsCount: number;
  /** How long the subscriber waits for stragglers once the others are done. */
  lingerMs: number;
  /** Deadline of each call (streams get it on top of their planned length). */
  timeoutMs: number;
}

/** Shortened defaults: the whole run takes a few seconds, not forever. */
export const defaultExampleOptions: Readonly<ExampleOptions> = Object.freeze({
  user: "",
  batchDelayMs: 50,
  chatIntervalMs: 100,
  chatCount: 10,
  metricsIntervalSeconds: 2,
  metricsCount: 10,
  lingerMs: 1000,
  timeoutMs: 10_000,
});

/** The verdict of one example. */
export interface ExampleResult {
  rpc: string;
  ok: boolean;
  detail: string;
}

/** Where progress lines go (stdout in the CLI, an array in tests). */
export type Log = (line: string) => void;

/** Room and users are the seed's. */
export const ROOM = "general";

/** Runs all five examples against `client`; never throws. */
export async function runExamples(
  client: ChatClient,
  opts: ExampleOptions,
  log: Log,
): Promise<ExampleResult[]> {
  log("=== Unary RPC Example ===");
  const unary = await unaryExample(client, opts, log);

  log("=== Server Streaming Example ===");
  const posted = new Set<string>();
  const sub = subscribeExample(client, opts, log, posted);
  await sub.ready;

  log("=== Client Streaming Example ===");
  const upload = await uploadExample(client, opts, log, posted);

  log("=== Bidirectional Streaming Example ===");
  const chat = chatExample(client, opts, log, posted);
  log("=== Metrics Streaming Example ===");
  const metrics = metricsExample(client, opts, log);
  const [chatResult, metricsResult] = await Promise.all([chat, metrics]);

  sub.finish();
  const subResult = await sub.done;
  return [unary, subResult, upload, chatResult, metricsResult];
}

async function unaryExample(
  client: ChatClient,
  opts: ExampleOptions,
  log: Log,
): Promise<ExampleResult> {
  const rpc = "SendMessage";
  try {
    const res = await client.sendMessage(
      {
        user: opts.user || "Alice",
        content: "Hello from unary RPC!",
        room: ROOM,
      },
      { deadline: deadlineIn(opts.timeoutMs) },
    );
    log(
      `Unary response: ID=${res.messageId}, Time=${formatIso(res.timestamp)}`,
    );
    const ok = res.messageId !== "";
    return { rpc, ok, detail: ok ? `id=${res.messageId}` : "empty message id" };
  } catch (err) {
    log(`Unary error: ${formatError(err)}`);
    return { rpc, ok: false, detail: formatError(err) };
  }
}

/**
 * Subscribes as Alice (or `opts.user`); `ready` settles on the welcome (or failure), `done`
 * once every id in `posted` was seen after `finish()`, or `lingerMs` later.
 */
function subscribeExample(
  client: ChatClient,
  opts: ExampleOptions,
  log: Log,
  posted: Set<string>,
) {
  const rpc = "SubscribeMessages";
  const seen = new Set<string>();
  let welcome = false, received = 0, finishing = false, cancelled = false;
  let error: unknown;
  let markReady = () => {};
  const ready = new Promise<void>((r) => markReady = r);
  const stream = client.subscribeMessages({
    room: ROOM,
    user: opts.user || "Alice",
  });
  const guard = setTimeout(() => markReady(), opts.timeoutMs);
  let lingerTimer: ReturnType<typeof setTimeout> | undefined;
  const stop = () => {
    if (!cancelled) cancelled = true, stream.cancel();
  };
  const allSeen = () => [...posted].every((id) => seen.has(id));
  stream.on("data", (m) => {
    received++;
    if (received === 1) {
      welcome = m.type === MessageType.SYSTEM &&
        m.content.startsWith("Welcome to room ");
      log(`Subscribed to room '${ROOM}'`);
      markReady();
    }
    log(`  ${formatMessage(m)}`);
    // The seed document broadcasts a bidi message as sent; the benchmark's
    // seed build broadcasts its echo instead. Either counts as seen.
    seen.add(m.id.startsWith("echo_") ? m.id.slice(5) : m.id);
    if (finishing && allSeen()) stop();
  });
  stream.on("error", (err) => {
    if (!cancelled) error = err;
  });
  const done = callEnded(stream).then((): ExampleResult => {
    clearTimeout(guard);
    clearTimeout(lingerTimer);
    markReady();
    const missing = [...posted].filter((id) => !seen.has(id)).length;
    const ok = error === undefined && welcome && missing === 0;
    const detail = error !== undefined
      ? formatError(error)
      : `${received} received (welcome ${welcome ? "yes" : "no"}), ` +
        `${posted.size - missing}/${posted.size} posted messages seen`;
    return { rpc, ok, detail };
  });
  return {
    ready,
    done,
    finish() {
      finishing = true;
      if (allSeen()) stop();
      else lingerTimer = setTimeout(stop, opts.lingerMs);
    },
  };
}

async function uploadExample(
  client: ChatClient,
  opts: ExampleOptions,
  log: Log,
  posted: Set<string>,
): Promise<ExampleResult> {
  const rpc = "UploadMessages";
  const contents = ["First", "Second", "Third", "Fourth", "Fifth"]
    .map((w) => `${w} batch message`);
  let sent = 0;
  const response = new Promise<{ count: number; success: boolean }>(
    (resolve, reject) => {
      const stream = client.uploadMessages(
        (err, res) =>
          err || !res ? reject(err) : resolve({
            count: res.messageCount,
            success: res.success,
          }),
        { deadline: deadlineIn(opts.timeoutMs + 5 * opts.batchDelayMs) },
      );
      (async () => {
        for (const [i, content] of contents.entries()) {
          const id = `batch_${i}`;
          stream.write({ id, user: opts.user || "Bob", content, room: ROOM });
          posted.add(id);
          sent++;
          log(`Sent batch message ${i + 1}`);
          await new Promise((r) => setTimeout(r, opts.batchDelayMs));
        }
        stream.end();
      })();
    },
  );
  try {
    const { count, success } = await response;
    log(`Upload complete: ${count} messages processed, success=${success}`);
    const ok = success && count === sent;
    return { rpc, ok, detail: `${sent} sent, server counted ${count}` };
  } catch (err) {
    log(`Upload error: ${formatError(err)}`);
    return { rpc, ok: false, detail: formatError(err) };
  }
}
