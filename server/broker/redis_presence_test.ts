import assert from "node:assert/strict";
import { startRedisServer } from "../../tools/serve/redis.ts";
import { connectRedisBroker } from "./redis_broker.ts";
import { createRedisPresence } from "./redis_presence.ts";

/** Two cores' brokers on one Redis. */
function twoCores(url: string) {
  const opts = { url, size: 100, ttlMs: 0 };
  return Promise.all([connectRedisBroker(opts), connectRedisBroker(opts)]);
}

/**
 * Two cores' presences (heartbeat 50 ms, expiry 200 ms); `a` reports the
 * users its sweeps find gone in `gone`, as `room/user`.
 */
async function sweepingPair(url: string) {
  const [ba, bb] = await twoCores(url);
  const gone: string[] = [];
  const timing = { heartbeatMs: 50, expiryMs: 200 };
  const a = createRedisPresence(ba, {
    ...timing,
    onGone: (room, user) => gone.push(`${room}/${user}`),
  });
  const b = createRedisPresence(bb, timing);
  return { ba, bb, a, b, gone };
}

Deno.test("createRedisPresence() lists users over cores and sweeps a dead core's after the expiry, reporting them gone once", async () => {
  await using redis = await startRedisServer();
  const { ba, bb, a, b, gone } = await sweepingPair(redis.url);
  try {
    a.join("r", "ann");
    a.join("r", "ann");
    b.join("r", "ann");
    b.join("r", "bob");
    a.join("other", "cid");
    assert.deepEqual(await a.list("r"), [
      { user: "ann", connections: 3 },
      { user: "bob", connections: 1 },
    ]);
    a.leave("r", "ann");
    assert.deepEqual(await b.list("r"), [
      { user: "ann", connections: 2 },
      { user: "bob", connections: 1 },
    ]);
    // Heartbeats keep entries past the expiry.
    await new Promise((r) => setTimeout(r, 400));
    assert.equal((await a.list("r")).length, 2);

    // b's process "dies": its heartbeats stop, its entries stay in Redis.
    await bb.close();
    await new Promise((r) => setTimeout(r, 400));
    assert.deepEqual(await a.list("r"), [{ user: "ann", connections: 1 }]);
    assert.deepEqual(gone, ["r/bob"]);
  } finally {
    await a.close();
    await b.close();
    await ba.close();
  }
  assert.deepEqual(gone, ["r/bob"]);
});

Deno.test("createRedisPresence() reports no one gone after Redis stalled past the expiry while every core was alive", async () => {
  await using redis = await startRedisServer();
  const [ba, bb] = await twoCores(redis.url);
  const gone: string[] = [];
  const timing = {
    heartbeatMs: 100,
    expiryMs: 500,
    onGone: (room: string, user: string) => gone.push(`${room}/${user}`),
  };
  const a = createRedisPresence(ba, timing);
  const b = createRedisPresence(bb, timing);
  try {
    a.join("r", "ann");
    b.join("r", "bob");
    await new Promise((r) => setTimeout(r, 600));
    // Paused (or swapping) for twice the expiry: nobody could renew, and
    // whichever core renews first afterwards must not sweep the others.
    Deno.kill(redis.pid, "SIGSTOP");
    await new Promise((r) => setTimeout(r, 1000));
    Deno.kill(redis.pid, "SIGCONT");
    await new Promise((r) => setTimeout(r, 1500));
    assert.deepEqual(gone, []);
    for (const p of [a, b]) {
      assert.deepEqual(await p.list("r"), [
        { user: "ann", connections: 1 },
        { user: "bob", connections: 1 },
      ]);
    }
  } finally {
    await a.close();
    await b.close();
    await ba.close();
    await bb.close();
  }
});

Deno.test("createRedisPresence() times entries by Redis's clock: cores 10 s behind and ahead of each other neither expire nor sweep each other's users", async () => {
  await using redis = await startRedisServer();
  const [ba, bb] = await twoCores(redis.url);
  const gone: string[] = [];
  const timing = {
    heartbeatMs: 50,
    expiryMs: 300,
    onGone: (room: string, user: string) => gone.push(`${room}/${user}`),
  };
  const behind = createRedisPresence(ba, {
    ...timing,
    now: () => Date.now() - 10_000,
  });
  const ahead = createRedisPresence(bb, {
    ...timing,
    now: () => Date.now() + 10_000,
  });
  try {
    behind.join("r", "ann");
    ahead.join("r", "bob");
    // Several expiries, with both sweeping on every heartbeat.
    await new Promise((r) => setTimeout(r, 1000));
    for (const p of [behind, ahead]) {
      assert.deepEqual(await p.list("r"), [
        { user: "ann", connections: 1 },
        { user: "bob", connections: 1 },
      ]);
    }
    assert.deepEqual(gone, []);
    // A dead core is still swept, by Redis's clock.
    await bb.close();
    await new Promise((r) => setTimeout(r, 700));
    assert.deepEqual(await behind.list("r"), [{ user: "ann", connections: 1 }]);
    assert.deepEqual(gone, ["r/bob"]);
  } finally {
    await behind.close();
    await ahead.close();
    await ba.close();
  }
});

Deno.test("createRedisPresence() sweeps a dead core that had more users in one room than a Lua unpack takes (about 8,000), all at once", async () => {
  await using redis = await startRedisServer();
  const [ba, bb] = await twoCores(redis.url);
  const gone: string[] = [];
  const errors: unknown[] = [];
  const a = createRedisPresence(ba, {
    heartbeatMs: 50,
    expiryMs: 200,
    onGone: (_room, user) => gone.push(user),
    onError: (err) => errors.push(err),
  });
  try {
    a.join("r", "ann");
    // A dead core's 10,000 entries in one room, long expired.
    const users = Array.from({ length: 10_000 }, (_, i) => `u${i}`);
    await bb.command(
      ["HSET", "chat:{r}:who"].concat(
        users.flatMap((u) => [`dead\n${u}`, "1"]),
      ),
    );
    await bb.command(
      ["ZADD", "chat:{r}:alive"].concat(
        users.flatMap((u) => ["1", `dead\n${u}`]),
      ),
    );
    await new Promise((r) => setTimeout(r, 500));
    const listed = await a.list("r");
    assert.equal(listed.length, 1);
    assert.deepEqual(listed, [{ user: "ann", connections: 1 }]);
    assert.equal(gone.length, 10_000);
    assert.deepEqual(errors, []);
    assert.equal(await bb.command(["HLEN", "chat:{r}:who"]), 1);
  } finally {
    await a.close();
    await ba.close();
    await bb.close();
  }
});

Deno.test("createRedisPresence() on a core whose clock jumps back an hour still sweeps a dead core's users after the expiry", async () => {
  await using redis = await startRedisServer();
  const [ba, bb] = await twoCores(redis.url);
  const gone: string[] = [];
  const timing = { heartbeatMs: 50, expiryMs: 200 };
  let offset = 0;
  const a = createRedisPresence(ba, {
    ...timing,
    onGone: (room, user) => gone.push(`${room}/${user}`),
    now: () => Date.now() + offset,
  });
  const b = createRedisPresence(bb, timing);
  try {
    a.join("r", "ann");
    b.join("r", "bob");
    await new Promise((r) => setTimeout(r, 400));
    assert.equal((await a.list("r")).length, 2);
    offset = -3600_000;
    await bb.close();
    await new Promise((r) => setTimeout(r, 800));
    assert.deepEqual(await a.list("r"), [{ user: "ann", connections: 1 }]);
    assert.deepEqual(gone, ["r/bob"]);
  } finally {
    await a.close();
    await b.close();
    await ba.close();
  }
});

Deno.test("createRedisPresence() writes a burst of joins together: 10,000 at once on one core are listed, and none expires and is announced gone while the rest wait", async () => {
  await using redis = await startRedisServer();
  const [ba, bb] = await twoCores(redis.url);
  const gone: string[] = [];
  const timing = {
    heartbeatMs: 50,
    expiryMs: 300,
    onGone: (room: string, user: string) => gone.push(`${room}/${user}`),
  };
  const a = createRedisPresence(ba, timing);
  const b = createRedisPresence(bb, timing);
  try {
    b.join("storm", "watcher");
    await new Promise((r) => setTimeout(r, 400)); // b is steady: it sweeps
    for (let i = 0; i < 10_000; i++) a.join("storm", `u${i}`);
    a.leave("storm", "u0");
    await new Promise((r) => setTimeout(r, 1000));
    assert.deepEqual(gone, []);
    const listed = await b.list("storm");
    assert.equal(listed.length, 10_000); // u1..u9999 and the watcher
    assert.ok(!listed.some((e) => e.user === "u0"));
  } finally {
    await a.close();
    await b.close();
    await ba.close();
    await bb.close();
  }
});

Deno.test("createRedisPresence() sweeps a dead core's users in a room no other core was in, when a core comes to the room long after the expiry", async () => {
  await using redis = await startRedisServer();
  const { ba, bb, a, b, gone } = await sweepingPair(redis.url);
  try {
    b.join("lonely", "bob");
    assert.deepEqual(await a.list("lonely"), [{ user: "bob", connections: 1 }]);
    // b's process "dies" while nobody else is in the room.
    await bb.close();
    // Well past twice the expiry, the keys' life before.
    await new Promise((r) => setTimeout(r, 1000));
    a.join("lonely", "ann");
    const end = Date.now() + 3000;
    while (gone.length === 0 && Date.now() < end) {
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.deepEqual(gone, ["lonely/bob"]);
    assert.deepEqual(await a.list("lonely"), [{ user: "ann", connections: 1 }]);
    // Everyone gone: the room's presence keys go with them.
    a.leave("lonely", "ann");
    await a.list("lonely");
    const raw = await ba.command(["EXISTS", "chat:{lonely}:who"]);
    assert.equal(Number(raw), 0);
  } finally {
    await a.close();
    await b.close();
    await ba.close();
  }
});
