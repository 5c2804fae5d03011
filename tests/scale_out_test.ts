/**
 * Three cores on one Redis (child processes, `--broker`): every subscriber on
 * every core gets every message published on any core, once, in order, with
 * equal offsets; a core killed with SIGKILL under load loses nothing for its
 * subscribers, who resume on another core; PUB/SUB cut under load; a Redis
 * restart; presence across cores; the edge in front (balancing and failover
 * alone: edge_failover_test.ts).
 */
import assert from "node:assert/strict";
import { status } from "@grpc/grpc-js";
import { type ChatClient, createChatClient } from "../client/rpc.ts";
import { type Message, MessageType } from "../gen/chat_pb.ts";
import { createClient as createRedisClient } from "redis";
import { startRedisServer } from "../tools/serve/redis.ts";
import {
  type CoreProcess,
  QUIET_CORE_ARGS,
  spawnCore,
} from "./support/core_process.ts";
import { eventually, rejection, take } from "./support/core.ts";
import { testCertificate } from "./support/auth.ts";
import { runDeno, withTempDir } from "./support/process.ts";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import { ChatService } from "../gen/chat_pb.ts";
import type { BalancedUpstream } from "../edge/upstream/balancer.ts";
import { startEdge } from "./fixtures/edge_stack.ts";
import {
  check,
  type HealthClient,
  healthClient,
  type Status,
} from "./support/health.ts";

const coreArgs = (url: string, ...more: string[]) => [
  "--broker",
  url,
  ...QUIET_CORE_ARGS,
  ...more,
];

/** A subscriber that records room messages (not the welcome) as they come. */
async function follow(
  client: ChatClient,
  room: string,
  user: string,
  resume: { epoch?: string; sinceOffset?: bigint } = {},
) {
  const stream = client.subscribeMessages({ room, user, ...resume });
  const [welcome] = await take<Message>(stream, 1);
  const got: Message[] = [];
  let error: { code?: number } | undefined;
  stream.on("data", (m: Message) => got.push(m));
  stream.on("error", (e: { code?: number }) => error = e);
  stream.resume();
  return {
    welcome,
    got,
    error: () => error,
    cancel: () => stream.cancel(),
  };
}

async function until(check: () => boolean, what: string, ms = 8000) {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const offsets = (ms: Message[]) => ms.map((m) => Number(m.offset));
const range = (from: number, to: number) =>
  Array.from({ length: to - from + 1 }, (_, i) => from + i);

Deno.test("three cores on one Redis: subscribers on each core get every message from any core once, in order, with equal offsets", async () => {
  await using redis = await startRedisServer();
  const cores = await Promise.all(
    [0, 1, 2].map(() => spawnCore(coreArgs(redis.url))),
  );
  const clients = cores.map((c) => createChatClient(c.addr));
  try {
    const subs = await Promise.all(
      clients.flatMap((c, i) => [
        follow(c, "all", `a${i}`),
        follow(c, "all", `b${i}`),
      ]),
    );
    const epoch = subs[0].welcome.epoch;
    assert.ok(epoch !== "");
    for (const s of subs) assert.equal(s.welcome.epoch, epoch);
    const acks = [];
    for (let i = 0; i < 60; i++) {
      acks.push(
        clients[i % 3].sendMessage({
          user: `p${i % 3}`,
          room: "all",
          content: `m${i}`,
        }),
      );
    }
    const answered = await Promise.all(acks);
    assert.deepEqual(
      answered.map((a) => Number(a.offset)).sort((x, y) => x - y),
      range(1, 60),
    );
    await until(() => subs.every((s) => s.got.length >= 60), "60 each");
    await new Promise((r) => setTimeout(r, 200)); // nothing more arrives
    const reference = subs[0].got.map((m) => [m.offset, m.id, m.content]);
    for (const s of subs) {
      assert.equal(s.got.length, 60);
      assert.deepEqual(offsets(s.got), range(1, 60));
      assert.deepEqual(
        s.got.map((m) => [m.offset, m.id, m.content]),
        reference,
      );
      assert.ok(s.got.every((m) => m.epoch === epoch));
    }
    // Message ids are unique across cores.
    assert.equal(new Set(reference.map((r) => r[1])).size, 60);
    // Each message's offset is the one its sender was told.
    const byContent = new Map(reference.map((r) => [r[2], r[0]]));
    answered.forEach((a, i) => assert.equal(byContent.get(`m${i}`), a.offset));
    for (const s of subs) s.cancel();
  } finally {
    for (const c of clients) c.close();
    await Promise.all(cores.map((c) => c.kill()));
  }
});

Deno.test("kill -9 of a core under load: its subscribers resume on another core with nothing lost", async () => {
  await using redis = await startRedisServer();
  const cores: CoreProcess[] = await Promise.all(
    [0, 1, 2].map(() => spawnCore(coreArgs(redis.url))),
  );
  const clients = cores.map((c) => createChatClient(c.addr));
  try {
    const victim = await follow(clients[1], "load", "victim");
    const witness = await follow(clients[2], "load", "witness");
    // Publish steadily from cores 0 and 2 while core 1 dies.
    const acked: number[] = [];
    let publishing = true;
    const publishers = [0, 2].map(async (c) => {
      for (let i = 0; publishing; i++) {
        try {
          const r = await clients[c].sendMessage({
            user: `p${c}`,
            room: "load",
            content: `${c}-${i}`,
          });
          acked.push(Number(r.offset));
        } catch { /* counted as not acknowledged */ }
      }
    });
    await until(() => victim.got.length >= 50, "victim got some");
    await cores[1].kill("SIGKILL");
    await until(() => victim.error() !== undefined, "victim's stream ended");
    const last = victim.got.at(-1)!;
    // The client reconnects to another core and resumes from its offset.
    const resumed = await follow(clients[0], "load", "victim", {
      epoch: last.epoch,
      sinceOffset: last.offset,
    });
    assert.equal(resumed.welcome.epoch, last.epoch);
    await new Promise((r) => setTimeout(r, 300));
    publishing = false;
    await Promise.all(publishers);
    const top = Math.max(...acked);
    await until(
      () => (resumed.got.at(-1)?.offset ?? 0n) >= BigInt(top),
      "resumed caught up",
    );
    const seen = [...offsets(victim.got), ...offsets(resumed.got)];
    assert.deepEqual(seen, range(1, top), "every offset once, in order");
    for (const o of acked) assert.ok(seen.includes(o));
    await until(() => witness.got.length >= top, "witness caught up");
    assert.deepEqual(offsets(witness.got), range(1, top));
    resumed.cancel();
    witness.cancel();
  } finally {
    for (const c of clients) c.close();
    await Promise.all(cores.map((c) => c.kill()));
  }
});

Deno.test("a stalled Redis (SIGSTOP): health says NOT_SERVING, publishes fail UNAVAILABLE within --broker-timeout instead of hanging, subscribers stay, and all is well once Redis answers", async () => {
  await using redis = await startRedisServer();
  const core = await spawnCore(
    coreArgs(redis.url, "--broker-timeout", "1s"),
  );
  const client = createChatClient(core.addr);
  const health = healthClient(core.addr);
  const wake = () => Deno.kill(redis.pid, "SIGCONT");
  try {
    const sub = await follow(client, "st", "s");
    await client.sendMessage({ user: "u", room: "st", content: "one" });
    await until(() => sub.got.length === 1, "one");
    const watch = health.watch({ service: "" });
    const watched: string[] = [];
    watch.on("data", (r: Status) => watched.push(r.status));
    watch.on("error", () => {});
    await until(() => watched.at(-1) === "SERVING", "watch: SERVING");

    // Nothing is sent: the core notices the stall by itself.
    Deno.kill(redis.pid, "SIGSTOP");
    await until(() => watched.at(-1) === "NOT_SERVING", "watch: NOT_SERVING");
    assert.equal(await check(health, ""), "NOT_SERVING");
    // No deadline on the call: the broker's timeout answers it.
    const t0 = Date.now();
    const err = await rejection(
      client.sendMessage({ user: "u", room: "st", content: "refused" }),
    );
    assert.equal(err.code, status.UNAVAILABLE);
    assert.match(err.details, /Redis did not answer within 1000 ms/);
    assert.ok(Date.now() - t0 < 3000, `${Date.now() - t0} ms`);

    wake();
    await until(() => watched.at(-1) === "SERVING", "watch: SERVING again");
    const two = await client.sendMessage({
      user: "u",
      room: "st",
      content: "two",
    });
    assert.equal(Number(two.offset), 2);
    await until(() => sub.got.length === 2, "two");
    assert.deepEqual(sub.got.map((m) => [Number(m.offset), m.content]), [
      [1, "one"],
      [2, "two"],
    ]);
    assert.equal(sub.error(), undefined);
    watch.cancel();
    sub.cancel();
  } finally {
    try {
      wake();
    } catch { /* gone */ }
    health.close();
    client.close();
    await core.kill();
  }
});

Deno.test("a Redis with a password, over TLS (rediss:// and --broker-ca) and plain: cores share rooms through it, and no log or error shows the password", async () => {
  await withTempDir(async (dir) => {
    const { certFile } = await testCertificate(dir);
    const password = "pw-Zq8/s3cret";
    await using redis = await startRedisServer({
      password,
      tls: { certFile, keyFile: `${dir}/key.pem` },
    });
    assert.ok(redis.tlsUrl?.startsWith("rediss://"));
    const overTls = await spawnCore(
      coreArgs(redis.tlsUrl!, "--broker-ca", certFile, "--log-level", "info"),
    );
    const plain = await spawnCore(coreArgs(redis.url, "--log-level", "info"));
    const clients = [overTls, plain].map((c) => createChatClient(c.addr));
    try {
      const sub = await follow(clients[1], "tls", "s");
      const sent = await clients[0].sendMessage({
        user: "u",
        room: "tls",
        content: "over TLS",
      });
      assert.equal(Number(sent.offset), 1);
      await until(() => sub.got.length === 1, "delivered on the plain core");
      assert.equal(sub.got[0].content, "over TLS");
      sub.cancel();
      for (const c of [overTls, plain]) {
        assert.match(
          c.output(),
          /history: redis broker rediss?:\/\/:\*\*\*@127/,
        );
        assert.ok(!c.output().includes("s3cret"), c.output());
      }

      // Refused at start-up: a wrong password, and a certificate nobody
      // said to trust. Exit 1 (the supervisor retries), one clear line.
      const core = ["run", "-A", "server/main.ts", "--port", "0"];
      const wrong = redis.url.replace(
        encodeURIComponent(password),
        "nope-nope",
      );
      const badPw = await runDeno([...core, "--broker", wrong]);
      assert.equal(badPw.code, 1, badPw.stderr);
      assert.match(badPw.stderr, /broker unavailable: .*(WRONGPASS|invalid)/i);
      assert.ok(!badPw.stderr.includes("nope-nope"), badPw.stderr);
      const untrusted = await runDeno([...core, "--broker", redis.tlsUrl!]);
      assert.equal(untrusted.code, 1, untrusted.stderr);
      assert.match(untrusted.stderr, /broker unavailable: .*certificate/i);
      assert.ok(!untrusted.stderr.includes("s3cret"), untrusted.stderr);
      // A CA file that is not there: a bad value (exit 2), named.
      const noCa = await runDeno([
        ...core,
        "--broker",
        redis.tlsUrl!,
        "--broker-ca",
        `${dir}/missing.pem`,
      ]);
      assert.equal(noCa.code, 2, noCa.stderr);
      assert.match(
        noCa.stderr,
        /cannot read --broker-ca \(CHAT_BROKER_CA\) .*missing\.pem/,
      );
    } finally {
      for (const c of clients) c.close();
      await Promise.all([overTls.kill(), plain.kill()]);
    }
  });
});

Deno.test("Redis restart: publishes fail UNAVAILABLE while it is down, subscribers stay, and the room goes on in a new epoch", async () => {
  let redis = await startRedisServer();
  const port = redis.port;
  const cores = await Promise.all(
    [0, 1].map(() => spawnCore(coreArgs(redis.url))),
  );
  const clients = cores.map((c) => createChatClient(c.addr));
  let health: HealthClient | undefined;
  try {
    const sub = await follow(clients[1], "r", "s");
    await clients[0].sendMessage({ user: "u", room: "r", content: "one" });
    await until(() => sub.got.length === 1, "one");
    const oldEpoch = sub.got[0].epoch;

    // The core says it is degraded in its metrics while Redis is down.
    const metrics = clients[0].streamMetrics({
      instanceId: "t",
      intervalSeconds: 1,
    });
    const storeUp: number[] = [];
    metrics.on("data", (m: { name: string; value: number }) => {
      if (m.name === "store_up") storeUp.push(m.value);
    });
    metrics.on("error", () => {});
    await until(() => storeUp.length > 0, "a store_up row");
    assert.equal(storeUp.at(-1), 1);

    // Health watchers hear of it as soon as the connection drops, before
    // any publish fails.
    health = healthClient(cores[0].addr);
    const watch = health.watch({ service: "" });
    const watched: string[] = [];
    watch.on("data", (r: Status) => watched.push(r.status));
    watch.on("error", () => {});
    await until(() => watched.at(-1) === "SERVING", "watch: SERVING");

    await redis.stop("SIGKILL");
    await until(() => watched.at(-1) === "NOT_SERVING", "watch: NOT_SERVING");
    assert.equal(await check(health, ""), "NOT_SERVING");
    const err = await rejection(
      clients[0].sendMessage({ user: "u", room: "r", content: "lost" }),
    );
    assert.equal(err.code, status.UNAVAILABLE);
    assert.match(err.details, /broker unavailable/);
    await until(() => storeUp.at(-1) === 0, "store_up 0 while down", 3000);

    redis = await startRedisServer({ port });
    let sent;
    for (let i = 0;; i++) {
      try {
        sent = await clients[0].sendMessage({
          user: "u",
          room: "r",
          content: "two",
        });
        break;
      } catch (e) {
        assert.equal((e as { code: number }).code, status.UNAVAILABLE);
        assert.ok(i < 100, "no reconnect within 5 s");
        await new Promise((r) => setTimeout(r, 50));
      }
    }
    assert.equal(Number(sent.offset), 1);
    await until(() => sub.got.length === 2, "two");
    assert.equal(sub.error(), undefined);
    assert.equal(sub.got[1].content, "two");
    assert.equal(Number(sub.got[1].offset), 1);
    assert.notEqual(sub.got[1].epoch, oldEpoch);
    await until(() => storeUp.at(-1) === 1, "store_up 1 again", 3000);
    assert.equal(await check(health!, ""), "SERVING");
    await until(() => watched.at(-1) === "SERVING", "watch: SERVING again");
    watch.cancel();
    metrics.cancel();
    sub.cancel();
  } finally {
    health?.close();
    for (const c of clients) c.close();
    await Promise.all(cores.map((c) => c.kill()));
    await redis.stop();
  }
});

Deno.test("presence across cores: JOIN/LEAVE reach every core, ListPresence is the same on each, and a dead core's users leave", async () => {
  await using redis = await startRedisServer();
  const cores = await Promise.all(
    [0, 1].map(() => spawnCore(coreArgs(redis.url, "--presence"))),
  );
  const clients = cores.map((c) => createChatClient(c.addr));
  try {
    const watcher = await follow(clients[0], "p", "watcher");
    const ann = await follow(clients[1], "p", "ann");
    await until(
      () =>
        watcher.got.some((m) =>
          m.type === MessageType.JOIN && m.user === "ann"
        ),
      "ann's JOIN on core 0",
    );
    for (const c of clients) {
      const { users } = await c.listPresence({ room: "p" });
      assert.deepEqual(users.map((u) => [u.user, u.connections]), [
        ["ann", 1],
        ["watcher", 1],
      ]);
    }
    ann.cancel();
    await until(
      () =>
        watcher.got.some((m) =>
          m.type === MessageType.LEAVE && m.user === "ann"
        ),
      "ann's LEAVE",
    );
    const bob = await follow(clients[1], "p", "bob");
    await until(
      () =>
        watcher.got.some((m) =>
          m.type === MessageType.JOIN && m.user === "bob"
        ),
      "bob's JOIN",
    );
    await cores[1].kill("SIGKILL");
    // Bob's core cannot say goodbye: the heartbeat expiry does.
    await until(
      () =>
        watcher.got.some((m) =>
          m.type === MessageType.LEAVE && m.user === "bob"
        ),
      "bob's LEAVE after his core died",
      8000,
    );
    const { users } = await clients[0].listPresence({ room: "p" });
    assert.deepEqual(users.map((u) => u.user), ["watcher"]);
    bob.cancel();
    watcher.cancel();
  } finally {
    for (const c of clients) c.close();
    await Promise.all(cores.map((c) => c.kill()));
  }
});

Deno.test("the edge in front of three cores on Redis: a stream whose core dies ends UNAVAILABLE and resumes through the edge on another core with nothing lost", async () => {
  await using redis = await startRedisServer();
  const cores = await Promise.all(
    [0, 1, 2].map(() => spawnCore(coreArgs(redis.url))),
  );
  const edge = startEdge(cores[0].url, { upstream: cores.map((c) => c.url) });
  const balancer = edge.upstream as BalancedUpstream;
  const client = createClient(
    ChatService,
    createConnectTransport({ baseUrl: edge.url, fetch: edge.fetch }),
  );
  try {
    // One stream per core (least outstanding, in turn).
    const streams = [0, 1, 2].map(() => {
      const ctl = new AbortController();
      const it = client.subscribeMessages({ room: "edge", user: "v" }, {
        signal: ctl.signal,
      })[Symbol.asyncIterator]();
      return { ctl, it, got: [] as Message[] };
    });
    for (const s of streams) await s.it.next();
    assert.deepEqual(balancer.members().map((m) => m.outstanding), [1, 1, 1]);
    for (let i = 0; i < 20; i++) {
      await client.sendMessage({ user: "u", room: "edge", content: `a${i}` });
    }
    for (const s of streams) {
      for (let i = 0; i < 20; i++) s.got.push((await s.it.next()).value!);
    }
    await cores[1].kill("SIGKILL");
    // Publishing goes on through the edge; the dead core's stream ends.
    const ends = await Promise.all(streams.map(async (s) => {
      try {
        for (;;) {
          const r = await Promise.race([
            s.it.next(),
            new Promise<"open">((r) => setTimeout(r, 1500, "open")),
          ]);
          if (r === "open") return "open";
          s.got.push(r.value!);
        }
      } catch (e) {
        return ConnectError.from(e).code;
      }
    }));
    assert.equal(ends.filter((e) => e === Code.Unavailable).length, 1);
    const victim = streams[ends.indexOf(Code.Unavailable)];
    await eventually(() => !balancer.members()[1].healthy, "core 1 out");
    for (let i = 0; i < 20; i++) {
      await client.sendMessage({ user: "u", room: "edge", content: `b${i}` });
    }
    const last = victim.got.at(-1)!;
    const resumed = client.subscribeMessages({
      room: "edge",
      user: "v",
      epoch: last.epoch,
      sinceOffset: last.offset,
    })[Symbol.asyncIterator]();
    const welcome = (await resumed.next()).value!;
    assert.equal(welcome.epoch, last.epoch);
    const after: Message[] = [];
    while (after.length < 40 - Number(last.offset)) {
      after.push((await resumed.next()).value!);
    }
    await resumed.return?.();
    assert.deepEqual(
      [...victim.got, ...after].map((m) => Number(m.offset)),
      range(1, 40),
    );
    assert.deepEqual(
      [...victim.got, ...after].map((m) => m.content),
      [
        ...range(0, 19).map((i) => `a${i}`),
        ...range(0, 19).map((i) => `b${i}`),
      ],
    );
    for (const s of streams) s.ctl.abort();
  } finally {
    await edge.close();
    await Promise.all(cores.map((c) => c.kill()));
  }
});

Deno.test("the edge in front of two cores: one whose Redis is down (NOT_SERVING) gets no calls while the other serves, and gets them again once its Redis is back; the connections to both are counted", async () => {
  // Each core on a Redis of its own, so that one can lose its broker.
  const redises = [await startRedisServer(), await startRedisServer()];
  const cores = await Promise.all(
    redises.map((r) => spawnCore(coreArgs(r.url))),
  );
  const edge = startEdge(cores[0].url, { upstream: cores.map((c) => c.url) });
  const balancer = edge.upstream as BalancedUpstream;
  const client = createClient(
    ChatService,
    createConnectTransport({ baseUrl: edge.url, fetch: edge.fetch }),
  );
  const send = (content: string) =>
    client.sendMessage({ user: "u", room: "ready", content });
  try {
    await eventually(
      () => balancer.members().every((m) => m.healthy && m.serving),
      "both cores serving",
    );
    // One connection to each core, summed over the balancer's members.
    const metrics = await (await edge.fetch(`${edge.url}/metrics`)).text();
    assert.match(metrics, /^chat_edge_upstream_connections 2$/m);
    const port = redises[0].port;
    await redises[0].stop("SIGKILL");
    await eventually(
      () => !balancer.members()[0].serving,
      "core 0 NOT_SERVING",
      5000,
    );
    // Still answering PINGs, so healthy; but no call goes there.
    assert.equal(balancer.members()[0].healthy, true);
    for (let i = 0; i < 20; i++) await send(`while-down-${i}`);
    const health = await (await edge.fetch(`${edge.url}/healthz`)).json();
    assert.deepEqual(
      health.upstreams.map((u: { serving: boolean }) => u.serving),
      [false, true],
    );
    redises[0] = await startRedisServer({ port });
    await eventually(
      () => balancer.members()[0].serving,
      "core 0 serving again",
      8000,
    );
    // Both take calls again: two open streams, one on each core.
    const ctls = [new AbortController(), new AbortController()];
    const its = ctls.map((ctl) =>
      client.subscribeMessages({ room: "ready", user: "v" }, {
        signal: ctl.signal,
      })[Symbol.asyncIterator]()
    );
    for (const it of its) await it.next();
    assert.deepEqual(balancer.members().map((m) => m.outstanding), [1, 1]);
    for (const ctl of ctls) ctl.abort();
  } finally {
    await edge.close();
    await Promise.all(cores.map((c) => c.kill()));
    for (const r of redises) await r.stop();
  }
});

Deno.test("PUB/SUB connections cut under load: subscribers on every core still get every offset once, filled from the streams", async () => {
  await using redis = await startRedisServer();
  const cores = await Promise.all(
    [0, 1].map(() => spawnCore(coreArgs(redis.url))),
  );
  const clients = cores.map((c) => createChatClient(c.addr));
  const admin = createRedisClient({ url: redis.url });
  await admin.connect();
  try {
    const subs = await Promise.all(clients.map((c) => follow(c, "cut", "s")));
    let sent = 0;
    const publish = async () => {
      for (let i = 0; i < 150; i++) {
        await clients[i % 2].sendMessage({
          user: "p",
          room: "cut",
          content: String(i),
        });
        sent++;
      }
    };
    const publishing = publish();
    await until(() => sent >= 30, "some published");
    await admin.sendCommand(["CLIENT", "KILL", "TYPE", "pubsub"]);
    await until(() => sent >= 90, "more published");
    await admin.sendCommand(["CLIENT", "KILL", "TYPE", "pubsub"]);
    await publishing;
    await until(() => subs.every((s) => s.got.length >= 150), "150 each");
    await new Promise((r) => setTimeout(r, 200));
    for (const s of subs) assert.deepEqual(offsets(s.got), range(1, 150));
    for (const s of subs) s.cancel();
  } finally {
    await admin.close();
    for (const c of clients) c.close();
    await Promise.all(cores.map((c) => c.kill()));
  }
});
