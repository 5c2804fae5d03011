import assert from "node:assert/strict";
import { status } from "@grpc/grpc-js";
import type { Message } from "../gen/chat_pb.ts";
import {
  eventually,
  rejection,
  rest,
  startCore,
  streamError,
  take,
  takeUntil,
} from "./support/core.ts";

Deno.test("cancelling any stream removes its subscriber, timers and scope", async () => {
  await using f = await startCore({ aliveIntervalMs: 20 });
  const sub = f.client.subscribeMessages({ room: "r", user: "a" });
  const chat = f.client.chat();
  const metrics = f.client.streamMetrics({
    instanceId: "t",
    intervalSeconds: 1,
  });
  await take(sub, 1);
  await take(chat, 1);
  await eventually(
    () => f.core.snapshot().activeStreams === 3,
    "three streams open",
  );
  assert.equal(f.core.snapshot().subscribers, 1);
  for (const s of [sub, chat, metrics]) {
    s.on("error", () => {});
    s.cancel();
  }
  await eventually(
    () => f.core.snapshot().activeStreams === 0,
    "streams closed on the server",
  );
  const snap = f.core.snapshot();
  assert.equal(snap.subscribers, 0);
  assert.equal(snap.rooms, 0);
  assert.equal(snap.openCalls, 0);
});

Deno.test("a client process that dies has its subscribers removed", async () => {
  await using f = await startCore();
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      new URL("./fixtures/core_subscriber.ts", import.meta.url).pathname,
      f.addr,
      "3",
    ],
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  const { value } = await reader.read();
  assert.match(value ?? "", /ready/);
  assert.equal(f.core.snapshot().subscribers, 3);
  child.kill("SIGKILL");
  await child.status;
  await reader.cancel();
  await eventually(
    () => f.core.snapshot().subscribers === 0,
    "subscribers removed",
  );
  assert.equal(f.core.snapshot().activeStreams, 0);
  assert.equal(f.core.snapshot().rooms, 0);
});

async function publishMany(
  f: Awaited<ReturnType<typeof startCore>>,
  room: string,
  n: number,
  size: number,
) {
  const pad = "x".repeat(size);
  for (let i = 0; i < n; i++) {
    await f.client.sendMessage({ user: "p", room, content: `${i}:${pad}` });
  }
}

Deno.test("slow consumer, drop policy: the slow one falls behind and is caught up from history once it reads again, every message once and in order, the last of the burst too", async () => {
  await using f = await startCore({ queueSize: 5, slowConsumer: "drop" });
  const fast = f.newClient().subscribeMessages({ room: "r", user: "fast" });
  const slow = f.newClient().subscribeMessages({ room: "r", user: "slow" });
  await Promise.all([take(fast, 1), take(slow, 1)]);
  // take() left `slow` paused: it stops reading, HTTP/2 flow control fills up.
  const fastGot = take(fast, 400, 20_000);
  await publishMany(f, "r", 400, 2048);
  assert.equal((await fastGot).length, 400);
  assert.ok(f.core.snapshot().fellBehind > 0, "it fell behind");
  // Nothing is published after the burst: the slow one still gets its end.
  const slowGot = await take(slow, 400, 10_000);
  const seq = slowGot.map((m) => Number(m.content.split(":")[0]));
  assert.deepEqual(seq, Array.from({ length: 400 }, (_, i) => i));
  assert.equal(f.core.snapshot().dropped, 0);
  assert.equal(f.core.snapshot().subscribers, 2);
  fast.cancel();
  slow.cancel();
});

Deno.test("slow consumer, drop policy: what history no longer holds when the slow one catches up is dropped and counted; the rest comes in order", async () => {
  await using f = await startCore({
    queueSize: 5,
    slowConsumer: "drop",
    historySize: 50,
  });
  const fast = f.newClient().subscribeMessages({ room: "r", user: "fast" });
  const slow = f.newClient().subscribeMessages({ room: "r", user: "slow" });
  await Promise.all([take(fast, 1), take(slow, 1)]);
  const fastGot = take(fast, 400, 20_000);
  await publishMany(f, "r", 400, 2048);
  assert.equal((await fastGot).length, 400);
  // It reads again: what waited, then what history still holds (the
  // last 50), up to the end of the burst.
  const seq =
    (await takeUntil<Message>(slow, (m) => m.content.startsWith("399:")))
      .map((m) => Number(m.content.split(":")[0]));
  assert.deepEqual([...seq].sort((a, b) => a - b), seq, "in order");
  assert.deepEqual(
    seq.slice(-50),
    Array.from({ length: 50 }, (_, i) => 350 + i),
  );
  assert.ok(seq.length < 400, `${seq.length} arrived: some were trimmed`);
  assert.equal(f.core.snapshot().dropped, 400 - seq.length, "drops counted");
  assert.equal(f.core.snapshot().subscribers, 2);
  fast.cancel();
  slow.cancel();
});

Deno.test("slow consumer, drop policy: a room forgotten (TTL) while the slow one is behind takes what it lacked of that epoch with it, counted as dropped", async () => {
  await using f = await startCore({
    queueSize: 5,
    slowConsumer: "drop",
    historyTtlMs: 300,
  });
  const slow = f.newClient().subscribeMessages({ room: "r", user: "slow" });
  const [welcome] = await take<Message>(slow, 1);
  await publishMany(f, "r", 200, 2048);
  assert.ok(f.core.snapshot().fellBehind > 0, "it fell behind");
  // The TTL passes and the sweep (every second at least) forgets the silent
  // room: its next message starts a new epoch.
  await new Promise((r) => setTimeout(r, 1500));
  await f.client.sendMessage({ user: "p", room: "r", content: "new:" });
  const got = await takeUntil<Message>(slow, (m) => m.content === "new:");
  const old = got.filter((m) => m.epoch === welcome.epoch);
  assert.deepEqual(
    old.map((m) => Number(m.offset)),
    Array.from({ length: old.length }, (_, i) => i + 1),
  );
  assert.ok(old.length < 200, `${old.length} of the old epoch arrived`);
  assert.notEqual(got.at(-1)!.epoch, welcome.epoch);
  assert.equal(got.at(-1)!.offset, 1n);
  assert.equal(f.core.snapshot().dropped, 200 - old.length, "drops counted");
  slow.cancel();
});

Deno.test("slow consumer, byte bound: with room for many messages but few bytes, the slow one's queue holds --queue-bytes, not --queue-size messages", async () => {
  // 100 places, 64 KiB: 3 messages of 20 KB wait in the queue.
  // History of 1: what did not fit cannot come back from history either,
  // so the drops show what the queue did not hold.
  await using f = await startCore({
    queueSize: 100,
    queueBytes: 64 * 1024,
    slowConsumer: "drop",
    historySize: 1,
  });
  const fast = f.newClient().subscribeMessages({ room: "r", user: "fast" });
  const slow = f.newClient().subscribeMessages({ room: "r", user: "slow" });
  await Promise.all([take(fast, 1), take(slow, 1)]);
  const fastGot = take(fast, 60, 20_000);
  await publishMany(f, "r", 60, 20_000);
  assert.equal((await fastGot).length, 60);
  // Flow control and the transport hold a few; 100 places would hold all
  // the others. Drops are counted when it catches up: it reads again.
  const received = (await takeUntil<Message>(
    slow,
    (m) => m.content.startsWith("59:"),
  )).length;
  const dropped = f.core.snapshot().dropped;
  assert.equal(dropped, 60 - received);
  assert.ok(dropped >= 20, `dropped ${dropped}`);
  fast.cancel();
  slow.cancel();
});

Deno.test("slow consumer, disconnect policy: the slow one ends with RESOURCE_EXHAUSTED", async () => {
  await using f = await startCore({ queueSize: 5, slowConsumer: "disconnect" });
  const fast = f.newClient().subscribeMessages({ room: "r", user: "fast" });
  const slow = f.newClient().subscribeMessages({ room: "r", user: "slow" });
  await Promise.all([take(fast, 1), take(slow, 1)]);
  const fastGot = take(fast, 400, 20_000);
  await publishMany(f, "r", 400, 2048);
  assert.equal((await fastGot).length, 400, "the fast subscriber lost nothing");
  assert.equal(f.core.snapshot().slowDisconnects, 1);
  assert.equal(f.core.snapshot().subscribers, 1);
  const err = await rejection(rest(slow, 10_000));
  assert.equal(err.code, status.RESOURCE_EXHAUSTED);
  assert.equal(err.details, "client too slow");
  fast.cancel();
});

Deno.test("slow consumer, disconnect policy: a client that never reads again is reset after the grace", async () => {
  await using f = await startCore({
    queueSize: 5,
    slowConsumer: "disconnect",
    slowConsumerGraceMs: 300,
  });
  const fast = f.newClient().subscribeMessages({ room: "r", user: "fast" });
  const stalled = f.newClient().subscribeMessages({
    room: "r",
    user: "stalled",
  });
  await Promise.all([take(fast, 1), take(stalled, 1)]);
  // Errors are emitted even while the stream is paused (not reading).
  const stalledError = new Promise<{ code: number; details: string }>((
    resolve,
  ) => stalled.once("error", resolve));
  const fastGot = take(fast, 400, 20_000);
  await publishMany(f, "r", 400, 2048);
  assert.equal((await fastGot).length, 400);
  assert.equal(f.core.snapshot().slowDisconnects, 1);
  // The stalled client keeps not reading: its status cannot get through, so
  // the server resets the stream once the grace is over.
  await eventually(
    () => f.core.snapshot().stalledResets === 1,
    "stalled stream reset",
    5000,
  );
  const err = await stalledError;
  assert.ok(
    err.code === status.CANCELLED || err.code === status.RESOURCE_EXHAUSTED,
    `ended with ${err.code} ${err.details}`,
  );
  fast.cancel();
});

Deno.test("slow consumer, disconnect policy: a slow reader within the grace gets its status, no reset", async () => {
  await using f = await startCore({
    queueSize: 5,
    slowConsumer: "disconnect",
    slowConsumerGraceMs: 5000,
  });
  const slow = f.newClient().subscribeMessages({ room: "r", user: "slow" });
  await take(slow, 1);
  await publishMany(f, "r", 400, 2048);
  assert.equal(f.core.snapshot().slowDisconnects, 1);
  const err = await rejection(rest(slow, 10_000));
  assert.equal(err.code, status.RESOURCE_EXHAUSTED);
  assert.equal(f.core.snapshot().stalledResets, 0);
});

Deno.test("shutdown ends open streams with UNAVAILABLE and refuses new calls", async () => {
  const f = await startCore();
  const sub = f.client.subscribeMessages({ room: "r", user: "a" });
  const chat = f.client.chat();
  const metrics = f.client.streamMetrics({ instanceId: "t" });
  await take(sub, 1);
  await eventually(
    () => f.core.snapshot().activeStreams === 3,
    "three streams open",
  );
  const errors = [sub, chat, metrics].map((s) => streamError(s));
  const stopped = f.core.shutdown(10_000);
  for (const err of await Promise.all(errors)) {
    assert.equal(err.code, status.UNAVAILABLE);
    assert.equal(err.details, "server is shutting down");
  }
  await stopped; // well before the 10 s grace: nothing was left open
  assert.deepEqual(f.core.snapshot(), {
    subscribers: 0,
    rooms: 0,
    activeStreams: 0,
    openCalls: 0,
    dropped: 0,
    fellBehind: 0,
    slowDisconnects: 0,
    stalledResets: 0,
    unfinishedRequestBytes: 0,
    queuedRequestBytes: 0,
  });
  const refused = await rejection(
    f.client.sendMessage({ user: "u", room: "r", content: "c" }),
  );
  assert.equal(refused.code, status.UNAVAILABLE);
  await f[Symbol.asyncDispose]();
});

Deno.test("shutdown forces connections closed after the grace period", async () => {
  const f = await startCore();
  // An upload that never half-closes keeps its connection busy.
  const up = f.client.uploadMessages(() => {});
  up.write({ user: "u", room: "r", content: "c" });
  await eventually(() => f.core.snapshot().activeStreams === 1, "upload open");
  const t0 = performance.now();
  await f.core.shutdown(200);
  assert.ok(performance.now() - t0 < 5000);
  assert.equal(f.core.snapshot().activeStreams, 0);
  await f[Symbol.asyncDispose]();
});
