import assert from "node:assert/strict";
import { createClient } from "redis";
import { startRedisServer } from "../../tools/serve/redis.ts";
import { ChatHub } from "../rooms/hub.ts";
import type { Appended } from "../rooms/history_store.ts";
import { decodeBatch } from "./room_feed.ts";
import {
  BrokerUnavailableError,
  connectRedisBroker,
  type RedisBroker,
} from "./redis_broker.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

interface Seen {
  epoch: string;
  offset: number;
  text: string;
}

async function follower(broker: RedisBroker, room: string) {
  const seen: Seen[] = [];
  const f = await broker.follow(room, (epoch, offset, body) => {
    seen.push({ epoch, offset, text: dec.decode(body) });
  });
  return { seen, ...f };
}

async function until(check: () => boolean, what: string, ms = 5000) {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** A broker keeping 1,000 messages per room, with no TTL. */
const plainBroker = (url: string) =>
  connectRedisBroker({ url, size: 1000, ttlMs: 0 });

const entry = (room: string, text: string) => ({
  room,
  body: enc.encode(text),
  timeMs: Date.now(),
});

Deno.test("RedisBroker: two cores on one Redis deliver every message once, in order, with equal offsets", async () => {
  await using redis = await startRedisServer();
  const opts = { url: redis.url, size: 1000, ttlMs: 0 };
  const a = await connectRedisBroker(opts);
  const b = await connectRedisBroker(opts);
  try {
    assert.notEqual(a.lastMessageId, b.lastMessageId);
    const fa = await follower(a, "r");
    const fb = await follower(b, "r");
    assert.equal(fa.offset, 0);
    assert.equal(fa.epoch, fb.epoch);
    const sent: string[] = [];
    const acks = [];
    for (let i = 0; i < 50; i++) {
      const from = i % 2 ? a : b;
      const batch = [
        entry("r", `m${i}a`),
        entry("other", "x"),
        entry("r", `m${i}b`),
      ];
      sent.push(`m${i}a`, `m${i}b`);
      acks.push(from.append(batch, 0));
    }
    const stored = await Promise.all(acks);
    const offsets = stored.flatMap((s) => [s[0].offset, s[2].offset]).sort((
      x,
      y,
    ) => x - y);
    assert.deepEqual(offsets, Array.from({ length: 100 }, (_, i) => i + 1));
    await until(
      () => fa.seen.length === 100 && fb.seen.length === 100,
      "100 each",
    );
    assert.deepEqual(fa.seen, fb.seen);
    assert.deepEqual(fa.seen.map((s) => s.offset), offsets);
    assert.ok(fa.seen.every((s) => s.epoch === fa.epoch));
    // Each batch's two messages are consecutive, in the order given.
    for (const s of stored) assert.equal(s[2].offset, s[0].offset + 1);
    assert.deepEqual(new Set(fa.seen.map((s) => s.text)), new Set(sent));

    const history = await b.read("r", 95, 10);
    assert.deepEqual(history.map((m) => m.offset), [96, 97, 98, 99, 100]);
    assert.deepEqual(
      history.map((m) => dec.decode(m.body)),
      fa.seen.slice(95).map((s) => s.text),
    );
    // Read in the room's epoch: the same rows; in another: none.
    const inEpoch = await b.read("r", 95, 10, fa.epoch);
    assert.deepEqual(inEpoch.map((m) => m.offset), [96, 97, 98, 99, 100]);
    assert.deepEqual(await b.read("r", 95, 10, "0123456789abcdef"), []);
    assert.deepEqual(await a.position("r"), { epoch: fa.epoch, offset: 100 });
    assert.equal(a.status().rooms, 1);
    fa.stop();
    fb.stop();
    assert.equal(a.status().rooms, 0);
  } finally {
    await a.close();
    await b.close();
  }
});

Deno.test("RedisBroker: a feed whose PUB/SUB connection dropped catches up from the stream with no gap", async () => {
  await using redis = await startRedisServer();
  const opts = { url: redis.url, size: 1000, ttlMs: 0 };
  const a = await connectRedisBroker(opts);
  const b = await connectRedisBroker(opts);
  const admin = createClient({ url: redis.url });
  await admin.connect();
  try {
    const fb = await follower(b, "g");
    await a.append([entry("g", "1")], 0);
    await until(() => fb.seen.length === 1, "first");
    // Cut every PUB/SUB connection; publish while b's is reconnecting.
    await admin.sendCommand(["CLIENT", "KILL", "TYPE", "pubsub"]);
    for (let i = 2; i <= 30; i++) await a.append([entry("g", String(i))], 0);
    await until(() => fb.seen.length === 30, "30 after the reconnect");
    // Only PUB/SUB dropped: once it is back, the broker says ok again.
    await until(() => b.status().state === "ok", "b ok again");
    assert.deepEqual(
      fb.seen.map((s) => s.offset),
      Array.from({ length: 30 }, (_, i) => i + 1),
    );
    assert.deepEqual(
      fb.seen.map((s) => s.text),
      fb.seen.map((s) => String(s.offset)),
    );
    fb.stop();
  } finally {
    await admin.close();
    await a.close();
    await b.close();
  }
});

Deno.test("RedisBroker: Redis down rejects appends UNAVAILABLE, says down, reconnects; a restart without persistence gives the room a new epoch", async () => {
  let redis = await startRedisServer();
  const port = redis.port;
  const opts = { url: redis.url, size: 1000, ttlMs: 0 };
  const a = await connectRedisBroker(opts);
  const states: string[] = [];
  a.onStateChange = () => states.push(a.status().state);
  try {
    const fa = await follower(a, "e");
    await a.append([entry("e", "before")], 0);
    await until(() => fa.seen.length === 1, "before");
    const oldEpoch = fa.seen[0].epoch;

    await redis.stop("SIGKILL");
    await until(() => a.status().state === "down", "down");
    assert.deepEqual(states, ["down"]);
    const err = await a.append([entry("e", "lost")], 0).catch((e) => e);
    assert.ok(err instanceof BrokerUnavailableError, String(err));
    assert.match(err.message, /^broker unavailable/);
    assert.equal(a.status().failedCommits, 1);
    // A new room cannot be followed meanwhile: told at once, not queued.
    const refused = await a.follow("new", () => {}).catch((e) => e);
    assert.ok(refused instanceof BrokerUnavailableError, String(refused));

    redis = await startRedisServer({ port });
    await until(() => a.status().state === "ok", "reconnected");
    assert.deepEqual(states, ["down", "ok"]);
    const [stored] = await a.append([entry("e", "after")], 0);
    assert.equal(stored.offset, 1);
    assert.notEqual(stored.epoch, oldEpoch);
    await until(() => fa.seen.length === 2, "after");
    assert.deepEqual(fa.seen[1], {
      epoch: stored.epoch,
      offset: 1,
      text: "after",
    });
    // The new epoch's offset 1 is not the old epoch's offset 1.
    assert.deepEqual(await a.read("e", 0, 10, oldEpoch), []);
    const now = await a.read("e", 0, 10, stored.epoch);
    assert.deepEqual(now.map((m) => dec.decode(m.body)), ["after"]);
    fa.stop();
  } finally {
    await a.close();
    await redis.stop();
  }
});

Deno.test("RedisBroker: a Redis that comes back from an older snapshot (same epoch, counter gone back) hands out no offset a core delivered: a following core moves the counter on, at its reconnect and at its appends", async () => {
  const dir = await Deno.makeTempDir();
  let redis = await startRedisServer({ snapshotDir: dir });
  const port = redis.port;
  const opts = { url: redis.url, size: 1000, ttlMs: 0 };
  const a = await connectRedisBroker(opts); // follows the room
  const b = await connectRedisBroker(opts); // only publishes
  const seq = () => a.command(["GET", "chat:{s}:seq"]).then(String);
  try {
    const fa = await follower(a, "s");
    for (let i = 1; i <= 5; i++) await a.append([entry("s", `m${i}`)], 0);
    await a.command(["SAVE"]);
    for (let i = 6; i <= 10; i++) await a.append([entry("s", `m${i}`)], 0);
    await until(() => fa.seen.length === 10, "ten");
    const epoch = fa.seen[0].epoch;

    await redis.stop("SIGKILL");
    redis = await startRedisServer({ port, snapshotDir: dir });
    await until(() => a.status().state === "ok", "a reconnected");
    // a's feed read the stream at its reconnect, which moved the counter
    // past offset 10 (the snapshot had 5).
    for (const end = Date.now() + 5000; await seq() !== "10";) {
      if (Date.now() > end) throw new Error(`seq stayed ${await seq()}`);
      await new Promise((r) => setTimeout(r, 20));
    }
    await until(() => b.status().state === "ok", "b reconnected");
    const [after] = await b.append([entry("s", "after")], 0);
    assert.deepEqual(after, { epoch, offset: 11 });
    await until(() => fa.seen.length === 11, "after, delivered");
    assert.deepEqual(fa.seen[10], { epoch, offset: 11, text: "after" });

    // The same at an append, with no reconnect between: the counter goes
    // back under the feed (as a failover to a lagging replica does).
    await a.command(["SET", "chat:{s}:seq", "8"]);
    const [mine] = await a.append([entry("s", "mine")], 0);
    assert.deepEqual(mine, { epoch, offset: 12 });
    await until(() => fa.seen.length === 12, "mine, delivered");
    assert.deepEqual(
      (await a.read("s", 0, 100)).map((m) => m.offset),
      [1, 2, 3, 4, 5, 11, 12],
      "the lost messages leave a gap in the offsets",
    );
    fa.stop();
  } finally {
    await a.close();
    await b.close();
    await redis.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("RedisBroker: a stalled Redis (SIGSTOP) is noticed with no traffic, fails appends after the timeout (saying they may be stored) and then at once, and is ok again when Redis answers", async () => {
  await using redis = await startRedisServer();
  const a = await connectRedisBroker({
    url: redis.url,
    size: 1000,
    ttlMs: 0,
    timeoutMs: 1000,
  });
  const states: string[] = [];
  a.onStateChange = () => states.push(a.status().state);
  const stall = () => Deno.kill(redis.pid, "SIGSTOP");
  const wake = () => Deno.kill(redis.pid, "SIGCONT");
  try {
    const fa = await follower(a, "s");
    await a.append([entry("s", "1")], 0);
    await until(() => fa.seen.length === 1, "1");

    // No traffic: the PING notices the stall (within a second and the
    // timeout), and Redis answering again ends it.
    stall();
    // A subscriber that comes before the stall is seen: its SUBSCRIBE gets
    // no answer, and it is told so after the timeout.
    const early = a.follow("early", () => {}).catch((e) => e);
    await until(() => a.status().state === "down", "down, idle", 3000);
    const held = await early;
    assert.ok(held instanceof BrokerUnavailableError, String(held));
    assert.match(held.message, /did not answer within 1000 ms/);
    assert.match(
      a.status().error ?? "",
      /Redis did not answer within 1000 ms/,
    );
    wake();
    await until(() => a.status().state === "ok", "ok again", 3000);
    assert.deepEqual(states, ["down", "ok"]);

    // An append sent just before a stall: rejected after the timeout, not
    // held until Redis wakes; it may still run then, and says so.
    stall();
    const t0 = Date.now();
    const sent = await a.append([entry("s", "2")], 0).catch((e) => e);
    const waited = Date.now() - t0;
    assert.ok(sent instanceof BrokerUnavailableError, String(sent));
    assert.match(
      sent.message,
      /^broker unavailable: Redis did not answer within 1000 ms; the message may still be stored$/,
    );
    assert.ok(waited >= 900 && waited < 4000, `waited ${waited} ms`);
    assert.equal(a.status().state, "down");
    // While stalled, the next one is told at once.
    const t1 = Date.now();
    const next = await a.append([entry("s", "3")], 0).catch((e) => e);
    assert.ok(next instanceof BrokerUnavailableError, String(next));
    assert.match(next.message, /did not answer within 1000 ms$/);
    assert.ok(Date.now() - t1 < 500, `${Date.now() - t1} ms`);
    // So is a new subscriber of a room (not held until Redis wakes).
    const refused = await a.follow("other", () => {}).catch((e) => e);
    assert.ok(refused instanceof BrokerUnavailableError, String(refused));
    // So are reads, after the timeout.
    const read = await a.read("s", 0, 10).catch((e) => e);
    assert.ok(read instanceof BrokerUnavailableError, String(read));
    assert.equal(a.status().failedCommits, 2);

    wake();
    await until(() => a.status().state === "ok", "ok after the stall", 3000);
    assert.deepEqual(states, ["down", "ok", "down", "ok"]);
    // "2" ran when Redis woke up (as it said it might); "3" never went out.
    const [stored] = await a.append([entry("s", "4")], 0);
    assert.equal(stored.offset, 3);
    const kept = await a.read("s", 0, 10);
    assert.deepEqual(kept.map((m) => dec.decode(m.body)), ["1", "2", "4"]);
    await until(() => fa.seen.length === 3, "the feed has all three");
    assert.deepEqual(
      fa.seen.map((s) => [s.offset, s.text]),
      [[1, "1"], [2, "2"], [3, "4"]],
    );
    fa.stop();
  } finally {
    try {
      wake();
    } catch { /* gone */ }
    await a.close();
  }
});

/**
 * A TCP proxy to Redis on `port` that passes everything on, except that a
 * connection which sent a request holding `marker` is closed when Redis's
 * next bytes for it come back: Redis ran the command, its answer is lost.
 */
function answerLosingProxy(port: number, marker: string) {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const conns = new Set<Deno.Conn>();
  const needle = enc.encode(marker);
  const holds = (chunk: Uint8Array) =>
    chunk.some((_, i) => needle.every((b, j) => chunk[i + j] === b));
  const close = (c: Deno.Conn) => {
    if (conns.delete(c)) c.close();
  };
  void (async () => {
    for await (const client of listener) {
      const redis = await Deno.connect({ hostname: "127.0.0.1", port });
      conns.add(client).add(redis);
      let cut = false;
      const pipe = async (from: Deno.Conn, to: Deno.Conn, up: boolean) => {
        const buf = new Uint8Array(64 * 1024);
        try {
          for (let n; (n = await from.read(buf)) !== null;) {
            const chunk = buf.subarray(0, n);
            if (up && holds(chunk)) cut = true;
            else if (!up && cut) break;
            await to.write(chunk);
          }
        } catch { /* closed */ }
        close(client);
        close(redis);
      };
      void pipe(client, redis, true);
      void pipe(redis, client, false);
    }
  })().catch(() => {});
  return {
    url: `redis://127.0.0.1:${(listener.addr as Deno.NetAddr).port}`,
    close() {
      listener.close();
      for (const c of [...conns]) close(c);
    },
  };
}

Deno.test("RedisBroker: an append whose answer is lost with the connection says the message may still be stored (it was)", async () => {
  await using redis = await startRedisServer();
  const proxy = answerLosingProxy(redis.port, "lost-answer");
  const a = await connectRedisBroker({ url: proxy.url, size: 1000, ttlMs: 0 });
  const b = await plainBroker(redis.url);
  try {
    await a.append([entry("c", "1")], 0);
    const err = await a.append([entry("c", "lost-answer")], 0).catch((e) => e);
    assert.ok(err instanceof BrokerUnavailableError, String(err));
    assert.match(err.message, /; the message may still be stored$/);
    const kept = await b.read("c", 0, 10);
    assert.deepEqual(kept.map((m) => dec.decode(m.body)), [
      "1",
      "lost-answer",
    ]);
  } finally {
    await a.close();
    await b.close();
    proxy.close();
  }
});

Deno.test("RedisBroker: a Redis that refuses writes (OOM) fails appends UNAVAILABLE in its words and is down until it takes a write again (an append, or the broker's probe)", async () => {
  await using redis = await startRedisServer();
  const a = await plainBroker(redis.url);
  const admin = createClient({ url: redis.url });
  await admin.connect();
  const states: string[] = [];
  a.onStateChange = () => states.push(a.status().state);
  try {
    await a.append([entry("m", "1")], 0);
    await admin.configSet({ maxmemory: "1", "maxmemory-policy": "noeviction" });
    const err = await a.append([entry("m", "2")], 0).catch((e) => e);
    assert.ok(err instanceof BrokerUnavailableError, String(err));
    assert.match(err.message, /^broker unavailable: OOM command not allowed/);
    // Redis answered: it did not run the script.
    assert.doesNotMatch(err.message, /may still be stored/);
    assert.equal(a.status().state, "down");
    assert.match(a.status().error ?? "", /^OOM/);
    // The PINGs Redis still answers do not make it ok again.
    await new Promise((r) => setTimeout(r, 1200));
    assert.equal(a.status().state, "down");

    await admin.configSet({ maxmemory: "0" });
    const [stored] = await a.append([entry("m", "3")], 0);
    assert.equal(stored.offset, 2);
    assert.equal(a.status().state, "ok");
    assert.deepEqual(states, ["down", "ok"]);

    // Refused again, then taken again with no append: a core with only
    // subscribers (or out of an edge's rotation for its NOT_SERVING) is
    // ok again once Redis takes writes.
    await admin.configSet({ maxmemory: "1" });
    await a.append([entry("m", "4")], 0).catch(() => {});
    assert.equal(a.status().state, "down");
    await new Promise((r) => setTimeout(r, 1500));
    assert.equal(a.status().state, "down", "still refused: still down");
    await admin.configSet({ maxmemory: "0" });
    await until(() => a.status().state === "ok", "ok without an append", 3000);
    assert.deepEqual(states, ["down", "ok", "down", "ok"]);
  } finally {
    await admin.quit();
    await a.close();
  }
});

Deno.test("RedisBroker: a Redis that comes up while the broker starts is waited for; a refused password fails at once, in Redis's words", async () => {
  const port = (() => {
    const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const p = (l.addr as Deno.NetAddr).port;
    l.close();
    return p;
  })();
  const connecting = connectRedisBroker({
    url: `redis://:pw@127.0.0.1:${port}`,
    size: 10,
    ttlMs: 0,
    timeoutMs: 3000,
  });
  await new Promise((r) => setTimeout(r, 700));
  await using redis = await startRedisServer({ port, password: "pw" });
  const a = await connecting;
  try {
    assert.equal(a.status().state, "ok");
    const [m] = await a.append([entry("late", "1")], 0);
    assert.equal(m.offset, 1);
  } finally {
    await a.close();
  }
  const t0 = Date.now();
  const err = await connectRedisBroker({
    url: redis.url.replace(":pw@", ":wrong@"),
    size: 10,
    ttlMs: 0,
    timeoutMs: 3000,
  }).catch((e) => e);
  assert.ok(err instanceof BrokerUnavailableError, String(err));
  assert.match(err.message, /^broker unavailable: WRONGPASS/);
  assert.ok(Date.now() - t0 < 2000, `${Date.now() - t0} ms`);
});

Deno.test("RedisBroker: connecting to a stalled Redis fails within the start-up bound instead of hanging", async () => {
  await using redis = await startRedisServer();
  Deno.kill(redis.pid, "SIGSTOP");
  try {
    const t0 = Date.now();
    const err = await connectRedisBroker({
      url: redis.url,
      size: 10,
      ttlMs: 0,
      timeoutMs: 300,
    }).catch((e) => e);
    assert.ok(err instanceof BrokerUnavailableError, String(err));
    assert.match(err.message, /Redis did not answer within 2000 ms/);
    assert.ok(Date.now() - t0 < 5000, `${Date.now() - t0} ms`);
  } finally {
    Deno.kill(redis.pid, "SIGCONT");
  }
});

Deno.test("RedisBroker: history is trimmed to about --history-size and reads skip messages past the TTL", async () => {
  await using redis = await startRedisServer();
  let clock = 1_000_000;
  const a = await connectRedisBroker({
    url: redis.url,
    size: 10,
    ttlMs: 60_000,
    now: () => clock,
  });
  try {
    const batch = Array.from({ length: 300 }, (_, i) => ({
      room: "t",
      body: enc.encode(String(i + 1)),
      timeMs: clock,
    }));
    await a.append(batch, 0);
    const kept = await a.read("t", 0, 1000);
    // MAXLEN ~ trims whole stream nodes: at least 10 kept, far fewer than 300.
    assert.ok(kept.length >= 10 && kept.length < 300, String(kept.length));
    assert.equal(kept.at(-1)!.offset, 300);
    clock += 61_000;
    assert.deepEqual(await a.read("t", 0, 1000), []);
    assert.equal((await a.position("t")).offset, 300);
  } finally {
    await a.close();
  }
});

Deno.test("RedisBroker without a history TTL: a room a subscription created expires unused, but not once it has messages", async () => {
  await using redis = await startRedisServer();
  const broker = await plainBroker(redis.url);
  const pttl = (key: string) => broker.command(["PTTL", key]);
  try {
    const created = await broker.position("quiet");
    assert.equal(created.offset, 0);
    assert.ok(Number(await pttl("chat:{quiet}:epoch")) > 0);
    assert.ok(Number(await pttl("chat:{quiet}:seq")) > 0);
    await broker.position("used");
    const [stored] = await broker.append([entry("used", "kept")], 0);
    assert.equal(stored.offset, 1);
    for (const key of ["epoch", "seq", "log"]) {
      assert.equal(Number(await pttl(`chat:{used}:${key}`)), -1, key);
    }
    // Ahead of the subscription, too: nothing to persist, nothing expires.
    await broker.append([entry("fresh", "x")], 0);
    assert.equal(Number(await pttl("chat:{fresh}:seq")), -1);
    // A room a core with a history TTL wrote: all three keys kept alike.
    const timed = await connectRedisBroker({
      url: redis.url,
      size: 1000,
      ttlMs: 600_000,
    });
    try {
      await timed.append([entry("mixed", "timed")], 0);
    } finally {
      await timed.close();
    }
    assert.ok(Number(await pttl("chat:{mixed}:log")) > 0);
    await broker.append([entry("mixed", "kept")], 0);
    for (const key of ["epoch", "seq", "log"]) {
      assert.equal(Number(await pttl(`chat:{mixed}:${key}`)), -1, key);
    }
  } finally {
    await broker.close();
  }
});

Deno.test("RedisBroker.append() stores and publishes a packed batch byte for byte: empty, binary and 64 KiB bodies", async () => {
  await using redis = await startRedisServer();
  const broker = await plainBroker(redis.url);
  try {
    const got: { offset: number; body: Uint8Array }[] = [];
    const f = await broker.follow("bin", (_epoch, offset, body) => {
      got.push({ offset, body: new Uint8Array(body) });
    });
    const big = new Uint8Array(65536);
    for (let i = 0; i < big.length; i++) big[i] = (i * 31) & 0xff;
    const bodies = [
      new Uint8Array(0),
      new Uint8Array([0, 10, 13, 0, 255, 10]),
      big,
      enc.encode("last\n"),
    ];
    const at = await broker.append(
      bodies.map((body) => ({ room: "bin", body, timeMs: Date.now() })),
      0,
    );
    assert.deepEqual(at.map((a) => a.offset), [1, 2, 3, 4]);
    // One more batch of one: offsets go on from the packed batch.
    const [next] = await broker.append([entry("bin", "one")], 0);
    assert.equal(next.offset, 5);
    await until(() => got.length === 5, "5 delivered");
    const expected = [...bodies, enc.encode("one")];
    assert.deepEqual(got.map((g) => g.offset), [1, 2, 3, 4, 5]);
    assert.deepEqual(got.map((g) => g.body), expected);
    const stored = await broker.read("bin", 0, 10);
    assert.deepEqual(stored.map((s) => s.body), expected);
    f.stop();
  } finally {
    broker.close();
  }
});

Deno.test("RedisBroker keeps a room name's leading U+FEFF: '\\uFEFFlobby' and 'lobby' are two rooms, live and in history", async () => {
  await using redis = await startRedisServer();
  const broker = await plainBroker(redis.url);
  try {
    const bom = await follower(broker, "\uFEFFlobby");
    const plain = await follower(broker, "lobby");
    await broker.append([entry("\uFEFFlobby", "to bom")], 0);
    await broker.append([entry("lobby", "to plain")], 0);
    await until(
      () => bom.seen.length === 1 && plain.seen.length === 1,
      "one each",
    );
    assert.deepEqual(bom.seen.map((s) => [s.offset, s.text]), [[1, "to bom"]]);
    assert.deepEqual(plain.seen.map((s) => [s.offset, s.text]), [
      [1, "to plain"],
    ]);
    const stored = await broker.read("\uFEFFlobby", 0, 10);
    assert.deepEqual(stored.map((s) => dec.decode(s.body)), ["to bom"]);
    assert.notEqual(bom.seen[0].epoch, plain.seen[0].epoch);
    bom.stop();
    plain.stop();
  } finally {
    broker.close();
  }
});

Deno.test("RedisBroker: message id blocks are never handed out twice, across cores, a Redis that lost its data, and the blocks of earlier versions", async () => {
  await using redis = await startRedisServer();
  const opts = { url: redis.url, size: 10, ttlMs: 0 };
  const admin = createClient({ url: redis.url });
  await admin.connect();
  const brokers: RedisBroker[] = [];
  try {
    // A block's ids are (lastMessageId, idBlocks.end].
    const range = (b: RedisBroker) => [b.lastMessageId, b.idBlocks!.end];
    brokers.push(await connectRedisBroker(opts));
    brokers.push(await connectRedisBroker(opts));
    const [a, b] = brokers.map(range);
    assert.ok(a[1] <= b[0] || b[1] <= a[0], `${a} and ${b} overlap`);
    // Redis restarted without persistence: its counter is gone. Blocks go
    // on from the tenths of a second since 2026: two taken in the same
    // tenth put the counter one ahead of the clock for a tenth.
    await new Promise((r) => setTimeout(r, 250));
    await admin.sendCommand(["FLUSHALL"]);
    brokers.push(await connectRedisBroker(opts));
    const c = range(brokers[2]);
    assert.ok(c[0] >= Math.max(a[1], b[1]), `${c} after ${a}, ${b}`);
    // An earlier version's counter (blocks of 10^9 ids, one per start).
    await admin.sendCommand(["FLUSHALL"]);
    await admin.sendCommand(["SET", "chat:msgid-block", "5000000"]);
    brokers.push(await connectRedisBroker(opts));
    assert.ok(brokers[3].lastMessageId >= 5_000_000 * 1e9);
    assert.ok(brokers[3].idBlocks!.end <= Number.MAX_SAFE_INTEGER);
  } finally {
    await admin.close();
    for (const b of brokers) await b.close();
  }
});

Deno.test("RedisBroker: a core asks for its next id block once half of one is used, and two hubs' ids stay distinct across many blocks", async () => {
  await using redis = await startRedisServer();
  const opts = { url: redis.url, size: 10, ttlMs: 0, idBlock: 8 };
  const a = await connectRedisBroker(opts);
  const b = await connectRedisBroker(opts);
  try {
    const hub = (store: RedisBroker) =>
      new ChatHub<Uint8Array>({
        queueCapacity: 10,
        policy: "drop",
        store,
        item: (body) => body,
      });
    const hubs = [hub(a), hub(b)];
    const ids: string[] = [];
    for (let i = 0; i < 60; i++) {
      const h = hubs[i % 2];
      // Never UNAVAILABLE: the next block was asked for half a block
      // before, ahead of the publishes that followed on the same
      // connection.
      const id = h.nextMessageId();
      ids.push(id);
      await new Promise<void>((resolve, reject) =>
        h.publish("r", new Uint8Array([i]), (e) => e ? reject(e) : resolve())
      );
    }
    assert.equal(new Set(ids).size, 60, ids.join(" "));
    // 30 ids per core in blocks of 8: each took 4 blocks at least.
    for (const from of [0, 1]) {
      const own = ids.filter((_, i) => i % 2 === from).map((id) =>
        Number(id.slice(4))
      );
      assert.ok(own.every((n, i) => i === 0 || n > own[i - 1]), `${own}`);
      assert.ok(new Set(own.map((n) => Math.ceil(n / 8))).size >= 4);
    }
  } finally {
    await a.close();
    await b.close();
  }
});

Deno.test("RedisBroker: a keyed entry whose scope the room stored within the window is not stored again, nor published; another scope, a later window or a new epoch is", async () => {
  await using redis = await startRedisServer();
  const a = await plainBroker(redis.url);
  const b = await plainBroker(redis.url);
  try {
    const f = await follower(a, "r");
    const keyed = (
      text: string,
      scope: string,
      id: string,
      windowMs = 60_000,
    ) => ({
      ...entry("r", text),
      key: { scope, id, windowMs, timeMs: Date.now() },
    });
    const [first] = await a.append([keyed("one", "1:ak", "msg_1")], 0);
    assert.equal(first.repeatOf, undefined);
    // The same scope from another core, in a batch with a new one.
    const both = await b.append([
      keyed("one again", "1:ak", "msg_9"),
      keyed("two", "1:ak2", "msg_10"),
      entry("r", "plain"),
    ], 0);
    assert.equal(both[0].offset, first.offset);
    assert.equal(both[0].repeatOf?.id, "msg_1");
    assert.equal(typeof both[0].repeatOf?.timeMs, "number");
    assert.deepEqual(
      [both[1].offset, both[2].offset, both[1].repeatOf, both[2].repeatOf],
      [2, 3, undefined, undefined],
    );
    await until(() => f.seen.length === 3, "three messages delivered");
    assert.deepEqual(f.seen.map((s) => [s.offset, s.text]), [
      [1, "one"],
      [2, "two"],
      [3, "plain"],
    ]);
    // A window of 50 ms: gone after it.
    await a.append([keyed("short", "1:as", "msg_20", 50)], 0);
    await new Promise((r) => setTimeout(r, 120));
    const later = await a.append([keyed("short", "1:as", "msg_21", 50)], 0);
    assert.equal(later[0].repeatOf, undefined);
    // A room that started again (its history lost) forgets its scopes.
    const raw = createClient({ url: redis.url });
    await raw.connect();
    await raw.del(["chat:{r}:epoch", "chat:{r}:seq", "chat:{r}:log"]);
    await raw.quit();
    const fresh = await a.append([keyed("one", "1:ak", "msg_30")], 0);
    assert.equal(fresh[0].repeatOf, undefined);
    assert.equal(fresh[0].offset, 1);
    assert.notEqual(fresh[0].epoch, first.epoch);
    f.stop();
  } finally {
    await a.close();
    await b.close();
  }
});

/** A keyed entry of room `room` (the scope's window a minute by default). */
const keyedEntry = (
  room: string,
  text: string,
  scope: string,
  id: string,
  windowMs = 60_000,
) => {
  const e = entry(room, text);
  return { ...e, key: { scope, id, windowMs, timeMs: e.timeMs } };
};

/** Every publication on `channel`, decoded, as a plain subscriber sees it. */
async function publications(url: string, channel: string) {
  const sub = createClient({ url });
  await sub.connect();
  const got: { epoch: string; first: number; bodies: string[] }[] = [];
  await sub.subscribe(channel, (payload: Buffer) => {
    const batch = decodeBatch(new Uint8Array(payload));
    got.push({
      epoch: batch.epoch,
      first: batch.first,
      bodies: batch.bodies.map((b) => dec.decode(b)),
    });
  }, true);
  return { got, [Symbol.asyncDispose]: () => sub.quit().then(() => {}) };
}

Deno.test("RedisBroker: a batch of repeats only stores nothing, publishes nothing and leaves the counter; a mixed one publishes the new bodies only, at consecutive offsets", async () => {
  await using redis = await startRedisServer();
  const a = await plainBroker(redis.url);
  const raw = createClient({ url: redis.url });
  await raw.connect();
  try {
    await using pubs = await publications(redis.url, "chat:{r}:pub");
    const f = await follower(a, "r");
    // Scopes as a user name may make them: spaces, newlines, UTF-8.
    const s1 = "5:a b c\nkey one";
    const s2 = "2:é\u{1F600}x y\n";
    const s3 = "3:\u0000\u00ff\nz";
    const first = await a.append([
      keyedEntry("r", "one", s1, "msg_1"),
      keyedEntry("r", "two", s2, "msg_2"),
    ], 0);
    assert.deepEqual(first.map((x) => [x.offset, x.repeatOf]), [
      [1, undefined],
      [2, undefined],
    ]);
    const seq = await raw.get("chat:{r}:seq");
    // Repeats only: nothing stored, counter and stream as they were.
    const again = await a.append([
      keyedEntry("r", "two again", s2, "msg_3"),
      keyedEntry("r", "one again", s1, "msg_4"),
    ], 0);
    assert.deepEqual(again.map((x) => [x.offset, x.repeatOf?.id]), [
      [2, "msg_2"],
      [1, "msg_1"],
    ]);
    assert.equal(again[0].epoch, first[0].epoch);
    assert.equal(await raw.get("chat:{r}:seq"), seq);
    assert.equal(await raw.xLen("chat:{r}:log"), 2);
    // Mixed, the repeats between bodies of other lengths.
    const big = "x".repeat(70_000);
    const mixed = await a.append([
      entry("r", "plain"),
      keyedEntry("r", "one yet again", s1, "msg_5"),
      keyedEntry("r", big, s3, "msg_6"),
      keyedEntry("r", "two yet again, longer than the first", s2, "msg_7"),
      entry("r", ""),
    ], 0);
    assert.deepEqual(mixed.map((x) => [x.offset, x.repeatOf?.id]), [
      [3, undefined],
      [1, "msg_1"],
      [4, undefined],
      [2, "msg_2"],
      [5, undefined],
    ]);
    await until(() => f.seen.length === 5, "five delivered");
    assert.deepEqual(f.seen.map((s) => [s.offset, s.text.slice(0, 5)]), [
      [1, "one"],
      [2, "two"],
      [3, "plain"],
      [4, "xxxxx"],
      [5, ""],
    ]);
    await until(() => pubs.got.length === 2, "two publications");
    assert.deepEqual(
      pubs.got.map((p) => [p.first, p.bodies.map((b) => b.slice(0, 5))]),
      [[1, ["one", "two"]], [3, ["plain", "xxxxx", ""]]],
    );
    assert.equal(pubs.got[1].bodies[1], big);
    const stored = await a.read("r", 0, 10);
    assert.deepEqual(
      stored.map((s) => [s.offset, dec.decode(s.body).slice(0, 5)]),
      [[1, "one"], [2, "two"], [3, "plain"], [4, "xxxxx"], [5, ""]],
    );
    // The new scope was kept, with its own offset.
    const [s3again] = await a.append([keyedEntry("r", "?", s3, "msg_8")], 0);
    assert.deepEqual([s3again.offset, s3again.repeatOf?.id], [4, "msg_6"]);
    f.stop();
  } finally {
    await raw.quit();
    await a.close();
  }
});

Deno.test("RedisBroker: one batch with the same new scope twice stores it once; the second is a repeat of the first", async () => {
  await using redis = await startRedisServer();
  const a = await plainBroker(redis.url);
  try {
    await using pubs = await publications(redis.url, "chat:{r}:pub");
    const at = await a.append([
      keyedEntry("r", "once", "1:ak", "msg_1"),
      entry("r", "plain"),
      keyedEntry("r", "twice", "1:ak", "msg_2"),
      keyedEntry("r", "thrice", "1:ak", "msg_3"),
    ], 0);
    assert.deepEqual(at.map((x) => [x.offset, x.repeatOf?.id]), [
      [1, undefined],
      [2, undefined],
      [1, "msg_1"],
      [1, "msg_1"],
    ]);
    assert.equal(at[2].repeatOf!.timeMs, at[3].repeatOf!.timeMs);
    const stored = await a.read("r", 0, 10);
    assert.deepEqual(stored.map((s) => dec.decode(s.body)), ["once", "plain"]);
    await until(() => pubs.got.length === 1, "one publication");
    assert.deepEqual(pubs.got[0].bodies, ["once", "plain"]);
    // And the scope is the first's for a later batch.
    const [later] = await a.append([keyedEntry("r", "x", "1:ak", "msg_4")], 0);
    assert.deepEqual([later.offset, later.repeatOf?.id], [1, "msg_1"]);
  } finally {
    await a.close();
  }
});

Deno.test("RedisBroker: a batch over several rooms maps each entry to its own room's answer, in order", async () => {
  await using redis = await startRedisServer();
  const a = await plainBroker(redis.url);
  try {
    await a.append([keyedEntry("x", "x1", "1:ak", "msg_1")], 0);
    const at = await a.append([
      keyedEntry("y", "y1", "1:ak", "msg_2"),
      keyedEntry("x", "x again", "1:ak", "msg_3"),
      entry("x", "x2"),
      entry("y", "y2"),
      keyedEntry("y", "y again", "1:ak", "msg_4"),
    ], 0);
    assert.deepEqual(at.map((x) => [x.offset, x.repeatOf?.id]), [
      [1, undefined],
      [1, "msg_1"],
      [2, undefined],
      [2, undefined],
      [1, "msg_2"],
    ]);
    assert.equal(at[1].epoch, at[2].epoch);
    assert.equal(at[0].epoch, at[3].epoch);
    assert.notEqual(at[0].epoch, at[1].epoch);
  } finally {
    await a.close();
  }
});

Deno.test("RedisBroker: a room's scopes past the window are neither repeats nor kept, however many came in a batch", async () => {
  await using redis = await startRedisServer();
  const a = await plainBroker(redis.url);
  const raw = createClient({ url: redis.url });
  await raw.connect();
  try {
    // A window long in real time (the keys' own PEXPIRE stays out of it),
    // the scripts' clock driven by the entries' times.
    const windowMs = 600_000;
    const t0 = Date.now();
    const batch = (at: number, count: number, tag: string) =>
      Array.from({ length: count }, (_, i) => ({
        ...entry("r", `${tag} ${i}`),
        timeMs: at,
        key: {
          scope: `${tag}-${String(i).padStart(5, "0")}`,
          id: `msg_${i}`,
          windowMs,
          timeMs: at,
        },
      }));
    // More scopes at once than one append drops past the window.
    await a.append(batch(t0, 1100, "s"), 0);
    const [late] = await a.append([
      { ...batch(t0 + windowMs + 1, 1100, "s")[1099] },
    ], 0);
    assert.equal(late.repeatOf, undefined);
    // A busy room: batches of 1,500 keyed messages, four per window.
    await raw.del(["chat:{r}:keys", "chat:{r}:keytimes"]);
    for (let k = 0; k < 12; k++) {
      await a.append(batch(t0 + k * windowMs / 4, 1500, `b${k}`), 0);
    }
    // The last four batches are in the window (the fifth is at its edge).
    assert.ok(
      await raw.hLen("chat:{r}:keys") <= 4 * 1500,
      `${await raw.hLen("chat:{r}:keys")} scopes`,
    );
    assert.equal(
      await raw.zCard("chat:{r}:keytimes"),
      await raw.hLen("chat:{r}:keys"),
    );
  } finally {
    await raw.quit();
    await a.close();
  }
});

Deno.test("RedisBroker: a room keeps at most keysPerRoom scopes, the oldest going first, however they came", async () => {
  await using redis = await startRedisServer();
  const opts = { url: redis.url, size: 1000, ttlMs: 0, keysPerRoom: 3 };
  const a = await connectRedisBroker(opts);
  const b = await connectRedisBroker(opts);
  const raw = createClient({ url: redis.url });
  await raw.connect();
  const scopes = async (room: string) => {
    const held = (await raw.hKeys(`chat:{${room}}:keys`)).sort();
    assert.deepEqual(
      (await raw.zRange(`chat:{${room}}:keytimes`, 0, -1)).sort(),
      held,
    );
    return held;
  };
  try {
    // One at a time, the same millisecond or not.
    for (let i = 1; i <= 5; i++) {
      await a.append([keyedEntry("r", `m${i}`, `1:k${i}`, `msg_${i}`)], 0);
    }
    assert.deepEqual(await scopes("r"), ["1:k3", "1:k4", "1:k5"]);
    // The oldest were dropped: sent again (from another core), they post;
    // the newest are still repeats.
    const again = await b.append([
      keyedEntry("r", "m1", "1:k1", "msg_1b"),
      keyedEntry("r", "m5", "1:k5", "msg_5b"),
    ], 0);
    assert.deepEqual(
      again.map((x) => [x.offset, x.repeatOf?.id]),
      [[6, undefined], [5, "msg_5"]],
    );
    assert.deepEqual(await scopes("r"), ["1:k1", "1:k4", "1:k5"]);
    // A batch of more new scopes than the bound keeps its newest.
    await a.append(
      Array.from(
        { length: 5 },
        (_, i) => keyedEntry("s", `n${i}`, `1:n${i}`, `msg_n${i}`),
      ),
      0,
    );
    assert.equal((await scopes("s")).length, 3);
    // Another room's bound is its own.
    assert.deepEqual(await scopes("r"), ["1:k1", "1:k4", "1:k5"]);
  } finally {
    await raw.quit();
    await a.close();
    await b.close();
  }
});

Deno.test("RedisBroker with a hub: a repeat the store left out is not counted as a message published", async () => {
  await using redis = await startRedisServer();
  const a = await plainBroker(redis.url);
  try {
    const hub = new ChatHub<Uint8Array>({
      queueCapacity: 10,
      policy: "drop",
      store: a,
      item: (body) => body,
    });
    const publish = (text: string, id: string) =>
      new Promise<Appended>((resolve, reject) =>
        hub.publish(
          "r",
          enc.encode(text),
          (e, at) => e ? reject(e) : resolve(at!),
          { scope: "1:ak", id, windowMs: 60_000, timeMs: Date.now() },
        )
      );
    const first = await publish("one", "msg_1");
    const again = await publish("one", "msg_2");
    assert.equal(first.repeatOf, undefined);
    assert.equal(again.repeatOf?.id, "msg_1");
    assert.equal(hub.stats.messagesPublished, 1);
  } finally {
    await a.close();
  }
});

Deno.test("RedisBroker: a repeat gets its first message's own time, not that of the batch's last entry", async () => {
  await using redis = await startRedisServer();
  const a = await plainBroker(redis.url);
  try {
    const t0 = Date.now() - 1000;
    // Entries that waited for the batch over several turns: times apart.
    const one = keyedEntry("r", "one", "1:ak", "msg_1");
    await a.append([
      { ...one, timeMs: t0, key: { ...one.key, timeMs: t0 } },
      { ...entry("r", "later"), timeMs: t0 + 40 },
    ], 0);
    const [again] = await a.append(
      [keyedEntry("r", "one", "1:ak", "msg_2")],
      0,
    );
    assert.deepEqual(again.repeatOf, { id: "msg_1", timeMs: t0 });
  } finally {
    await a.close();
  }
});
