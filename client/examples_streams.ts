/**
 * The two long-running examples: bidirectional chat as Charlie (or the
 * chosen user) and the
 * metrics stream for instance server-01.
 *
 * Both are bounded by a guard timer that cancels the call, because the seed's
 * server never ends either stream on its own (the chat ends only after the
 * client half-closes, the metrics stream never).
 *
 * @module
 */
import type { ExampleOptions, ExampleResult, Log } from "./examples.ts";
import { callEnded, type ChatClient } from "./rpc.ts";
import { formatError, formatMetric } from "./format.ts";

/**
 * Sends `chatCount` messages as Charlie (or `opts.user`), expects one echo
 * for each.
 */
export function chatExample(
  client: ChatClient,
  opts: ExampleOptions,
  log: Log,
  posted: Set<string>,
): Promise<ExampleResult> {
  const rpc = "Chat";
  const stream = client.chat();
  let sent = 0, echoes = 0, heartbeats = 0, halfClosed = false;
  let cancelled = false, error: unknown;
  const cancel = () => {
    if (!cancelled) cancelled = true, stream.cancel();
  };
  const planned = opts.chatCount * opts.chatIntervalMs;
  const guard = setTimeout(cancel, planned + opts.timeoutMs);
  let closeWait: ReturnType<typeof setTimeout> | undefined;
  const maybeDone = () => {
    // The seed server ends the call once it sees our half-close; give any
    // server a second to do so, then cancel ourselves.
    if (halfClosed && echoes >= sent && closeWait === undefined) {
      closeWait = setTimeout(cancel, 1000);
    }
  };
  stream.on("data", (m) => {
    if (m.id.startsWith("echo_")) echoes++;
    else if (m.content === "Server is alive!") heartbeats++;
    log(`[Bidirectional] ${m.user}: ${m.content}`);
    maybeDone();
  });
  stream.on("error", (err) => {
    if (!cancelled) error = err;
  });
  const closed = callEnded(stream);
  let sendTimer: ReturnType<typeof setTimeout> | undefined;
  const sendNext = () => {
    if (cancelled || error !== undefined) return;
    if (sent >= opts.chatCount) {
      stream.end();
      halfClosed = true;
      maybeDone();
      return;
    }
    sent++;
    const id = `client_${sent}`;
    stream.write({
      id,
      user: opts.user || "Charlie",
      content: `Bidirectional message #${sent}`,
      room: "general",
    });
    posted.add(id);
    log(`Sent bidirectional message #${sent}`);
    sendTimer = setTimeout(sendNext, opts.chatIntervalMs);
  };
  sendTimer = setTimeout(sendNext, opts.chatIntervalMs);
  return closed.then(() => {
    clearTimeout(guard);
    clearTimeout(closeWait);
    clearTimeout(sendTimer);
    const ok = error === undefined && sent === opts.chatCount &&
      echoes === sent;
    const detail = error !== undefined
      ? formatError(error)
      : `${sent} sent, ${echoes} echoes, ${heartbeats} heartbeats`;
    return { rpc, ok, detail };
  });
}

/** Reads `metricsCount` metrics, then cancels the stream. */
export function metricsExample(
  client: ChatClient,
  opts: ExampleOptions,
  log: Log,
): Promise<ExampleResult> {
  const rpc = "StreamMetrics";
  const stream = client.streamMetrics({
    instanceId: "server-01",
    intervalSeconds: opts.metricsIntervalSeconds,
  });
  log("Receiving metrics stream...");
  let count = 0, cancelled = false, error: unknown;
  const names = new Set<string>();
  const cancel = () => {
    if (!cancelled) cancelled = true, stream.cancel();
  };
  const planned = (opts.metricsCount + 1) * opts.metricsIntervalSeconds * 1000;
  const guard = setTimeout(cancel, planned + opts.timeoutMs);
  stream.on("data", (m) => {
    if (count >= opts.metricsCount) return;
    count++;
    names.add(m.name);
    log(`Metric: ${formatMetric(m)}`);
    if (count >= opts.metricsCount) cancel();
  });
  stream.on("error", (err) => {
    if (!cancelled) error = err;
  });
  return callEnded(stream).then(() => {
    clearTimeout(guard);
    const ok = error === undefined && count >= opts.metricsCount;
    const detail = error !== undefined
      ? formatError(error)
      : `${count}/${opts.metricsCount} metrics (${[...names].join(", ")})`;
    return { rpc, ok, detail };
  });
}
