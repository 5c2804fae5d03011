/**
 * Abuse limits at the core: a token bucket of messages per user (per
 * connection with auth off) and concurrent subscriptions, over grpc-js.
 */
import assert from "node:assert/strict";
import { status } from "@grpc/grpc-js";
import type { ChatClient } from "../client/rpc.ts";
import { MessageType } from "../gen/chat_pb.ts";
import { bearer, hs256, SECRET } from "./support/auth.ts";
import {
  type CoreFixture,
  eventually,
  rejection,
  startCore,
  streamError,
  take,
} from "./support/core.ts";

const post = (client: ChatClient, content: string) =>
  client.sendMessage({ user: "", room: "lobby", content });

Deno.test("rate limit: past the burst SendMessage fails RESOURCE_EXHAUSTED with a retry hint, per user", async () => {
  await using f = await startCore({
    jwtSecret: SECRET,
    rateLimit: 1,
    rateBurst: 2,
  });
  const alice = f.newClient(bearer(await hs256({ sub: "alice" })));
  // A second connection of the same user shares the bucket.
  const alice2 = f.newClient(bearer(await hs256({ sub: "alice" })));
  const bob = f.newClient(bearer(await hs256({ sub: "bob" })));
  await post(alice, "1");
  await post(alice2, "2");
  const err = await rejection(post(alice, "3"));
  assert.equal(err.code, status.RESOURCE_EXHAUSTED);
  const match = /rate limit exceeded: retry after (\d+) ms/.exec(err.details);
  assert.ok(match, err.details);
  const hinted = Number(match[1]);
  assert.ok(hinted > 0 && hinted <= 1000, String(hinted));
  assert.equal(err.metadata.get("retry-after-ms")[0], match[1]);
  assert.equal(
    (await rejection(post(alice2, "4"))).code,
    status.RESOURCE_EXHAUSTED,
  );
  await post(bob, "other users are not affected");
  await new Promise((r) => setTimeout(r, hinted + 20));
  await post(alice, "after the hint");
});

Deno.test("rate limit: a Chat or UploadMessages stream past the limit ends RESOURCE_EXHAUSTED", async () => {
  await using f = await startCore({
    jwtSecret: SECRET,
    rateLimit: 1,
    rateBurst: 3,
  });
  const watcher = f.newClient(bearer(await hs256({ sub: "watcher" })))
    .subscribeMessages({ room: "lobby", user: "" });
  await take(watcher, 1);
  const client = f.newClient(bearer(await hs256({ sub: "alice" })));
  const chat = client.chat();
  for (let i = 0; i < 5; i++) {
    chat.write({ user: "", room: "lobby", content: `m${i}` });
  }
  const err = await streamError(chat);
  // The burst went through, the rest did not.
  const got = await take(watcher, 3);
  assert.deepEqual(got.map((m) => m.content), ["m0", "m1", "m2"]);
  assert.equal(f.core.snapshot().activeStreams, 1);
  assert.equal(err.code, status.RESOURCE_EXHAUSTED);
  assert.match(err.details, /retry after \d+ ms/);
  const upErr = await rejection(
    new Promise((resolve, reject) => {
      const up = client.uploadMessages((e, r) => e ? reject(e) : resolve(r));
      up.write({ user: "", room: "lobby", content: "x" });
      up.end();
    }),
  );
  assert.equal(upErr.code, status.RESOURCE_EXHAUSTED);
  assert.match(upErr.details, /rate limit exceeded/);
  watcher.cancel();
});

Deno.test("rate limit: with auth off each connection has its own bucket", async () => {
  await using f = await startCore({ rateLimit: 1, rateBurst: 1 });
  const a = f.newClient();
  const b = f.newClient();
  const send = (c: ChatClient) =>
    c.sendMessage({ user: "same-name", room: "lobby", content: "x" });
  await send(a);
  await send(b);
  assert.equal((await rejection(send(a))).code, status.RESOURCE_EXHAUSTED);
  assert.equal((await rejection(send(b))).code, status.RESOURCE_EXHAUSTED);
});

Deno.test("max subscriptions: a user's subscription past the limit fails RESOURCE_EXHAUSTED until one ends", async () => {
  await using f = await startCore({ jwtSecret: SECRET, maxSubscriptions: 2 });
  const token = await hs256({ sub: "alice" });
  const one = f.newClient(bearer(token));
  const two = f.newClient(bearer(token));
  const s1 = one.subscribeMessages({ room: "a", user: "" });
  const s2 = two.subscribeMessages({ room: "b", user: "" });
  await take(s1, 1);
  await take(s2, 1);
  const err = await streamError(
    one.subscribeMessages({ room: "c", user: "" }),
  );
  assert.equal(err.code, status.RESOURCE_EXHAUSTED);
  assert.match(err.details, /too many subscriptions: at most 2 .* per user/);
  const bob = f.newClient(bearer(await hs256({ sub: "bob" })))
    .subscribeMessages({ room: "a", user: "" });
  await take(bob, 1);
  s1.cancel();
  await eventually(() => f.core.snapshot().subscribers === 2, "s1 gone");
  const s3 = one.subscribeMessages({ room: "c", user: "" });
  await take(s3, 1);
  for (const s of [s2, s3, bob]) s.cancel();
});

Deno.test("max subscriptions: with auth off the limit is per connection", async () => {
  await using f = await startCore({ maxSubscriptions: 1 });
  const a = f.newClient();
  const b = f.newClient();
  const sa = a.subscribeMessages({ room: "r", user: "u" });
  const sb = b.subscribeMessages({ room: "r", user: "u" });
  await take(sa, 1);
  await take(sb, 1);
  const err = await streamError(a.subscribeMessages({ room: "r", user: "u" }));
  assert.equal(err.code, status.RESOURCE_EXHAUSTED);
  assert.match(err.details, /per connection/);
  sa.cancel();
  sb.cancel();
});

Deno.test("StreamMetrics counts as a subscription (a place under --max-subscriptions, given back at its end) and refuses an instance_id longer than a name", async () => {
  await using f = await startCore({ maxSubscriptions: 1 });
  const long = await streamError(
    f.client.streamMetrics({ intervalSeconds: 1, instanceId: "x".repeat(257) }),
  );
  assert.equal(long.code, status.INVALID_ARGUMENT);
  assert.match(long.details, /instance_id is longer than 256/);
  const first = f.client.streamMetrics({ intervalSeconds: 1 });
  await take(first, 1);
  const second = await streamError(
    f.client.streamMetrics({ intervalSeconds: 1 }),
  );
  assert.equal(second.code, status.RESOURCE_EXHAUSTED);
  assert.match(second.details, /too many subscriptions/);
  first.cancel();
  // Its place is given back (once the cancel reaches the core): a
  // subscription now fits.
  const until = Date.now() + 3000;
  for (;;) {
    const s = f.client.subscribeMessages({ room: "r", user: "u" });
    try {
      await take(s, 1);
      break;
    } catch (err) {
      assert.ok(Date.now() < until, `no place again: ${err}`);
      await new Promise((r) => setTimeout(r, 20));
    } finally {
      s.cancel();
    }
  }
});

Deno.test("rate limit: a subscription takes from the user's bucket, so a subscribe/cancel loop cannot flood a room with JOIN/LEAVE", async () => {
  await using f = await startCore({
    jwtSecret: SECRET,
    presence: true,
    rateLimit: 1,
    rateBurst: 2,
  });
  const watcher = f.newClient(bearer(await hs256({ sub: "watcher" })))
    .subscribeMessages({ room: "lobby", user: "" });
  await take(watcher, 2); // the welcome and its own JOIN
  const alice = f.newClient(bearer(await hs256({ sub: "alice" })));
  for (let i = 0; i < 2; i++) {
    const s = alice.subscribeMessages({ room: "lobby", user: "" });
    await take(s, 1);
    s.cancel();
  }
  const err = await streamError(
    alice.subscribeMessages({ room: "lobby", user: "" }),
  );
  assert.equal(err.code, status.RESOURCE_EXHAUSTED);
  const match = /rate limit exceeded: retry after (\d+) ms/.exec(err.details);
  assert.ok(match, err.details);
  assert.equal(err.metadata.get("retry-after-ms")[0], match[1]);
  // The bucket is the one messages use: a post now waits too.
  assert.equal(
    (await rejection(post(alice, "hi"))).code,
    status.RESOURCE_EXHAUSTED,
  );
  await eventually(() => f.core.snapshot().subscribers === 1, "alice gone");
  // The room heard two JOINs and two LEAVEs of alice, nothing more.
  const seen = await take(watcher, 4);
  assert.deepEqual(
    seen.map((m) => `${MessageType[m.type]} ${m.user}`).sort(),
    ["JOIN alice", "JOIN alice", "LEAVE alice", "LEAVE alice"],
  );
  await assert.rejects(take(watcher, 1, 200), /timed out/);
  watcher.cancel();
});

Deno.test("max connections: one past --max-connections is closed at once, its call fails UNAVAILABLE without hanging, the refusals are counted, and a freed place is taken again", async () => {
  await using f = await startCore({ maxConnections: 2, metricsPort: 0 });
  const msg = (content: string) => ({ user: "u", room: "lobby", content });
  await f.client.sendMessage(msg("first"));
  const second = f.newClient();
  await second.sendMessage(msg("second"));

  // A raw third connection: closed, nothing written.
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: f.core.port });
  const buf = new Uint8Array(1024);
  assert.equal(await conn.read(buf).catch(() => null), null);
  conn.close();

  // A grpc-js client over the bound: its call fails, it does not hang.
  const third = f.newClient();
  const refused = await rejection(
    third.sendMessage(msg("third"), {
      deadline: Date.now() + 5000,
    }),
  );
  assert.equal(refused.code, status.UNAVAILABLE, refused.details);
  const metrics = await (await fetch(
    `http://127.0.0.1:${f.core.metricsPort}/metrics`,
  )).text();
  assert.match(metrics, /^chat_connections 2$/m);
  const count = Number(
    /^chat_connections_refused_total (\d+)$/m.exec(metrics)![1],
  );
  assert.ok(count >= 2, metrics);

  // One closes: a new connection is served. The refused client would take
  // the place back by itself (grpc-js reconnects): it goes first.
  await servedAgain(f, third, second);
});

/**
 * Closes `refused` and then `held` (whose connection held a place), and
 * waits until a new client is served in the place `held` gave back.
 */
async function servedAgain(
  f: CoreFixture,
  refused: ChatClient,
  held: ChatClient,
): Promise<void> {
  refused.close();
  held.close();
  let ok = false;
  for (let i = 0; i < 50 && !ok; i++) {
    const fresh = f.newClient();
    ok = await fresh.sendMessage({ user: "u", room: "lobby", content: "again" })
      .then(() => true, () => false);
    if (!ok) {
      fresh.close();
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  assert.ok(ok, "a connection is served again once one closed");
}

/**
 * Whether a connection from `source` to 127.0.0.1:`port` is served: the
 * server's SETTINGS come back for the client preface, or it is closed
 * with nothing written. Python binds the source address, which Deno's
 * connect cannot.
 */
async function servedFrom(source: string, port: number): Promise<string> {
  const script = `
import socket, sys
s = socket.socket()
s.settimeout(5)
s.bind((sys.argv[1], 0))
s.connect(("127.0.0.1", int(sys.argv[2])))
s.sendall(b"PRI * HTTP/2.0\\r\\n\\r\\nSM\\r\\n\\r\\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0]))
head = b""
try:
    while len(head) < 9:
        more = s.recv(9 - len(head))
        if not more:
            break
        head += more
except ConnectionResetError:
    pass
print("served" if len(head) == 9 and head[3] == 4 else "closed")
`;
  const out = await new Deno.Command("/usr/bin/python3", {
    args: ["-c", script, source, String(port)],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout).trim();
  if (!out.success) {
    throw new Error(`python3: ${new TextDecoder().decode(out.stderr)}`);
  }
  return text;
}

Deno.test("max connections per IP: one address past --max-connections-per-ip is closed at once (grpc-js: UNAVAILABLE) and counted, another address is served, and a freed place is taken again", async () => {
  await using f = await startCore({
    maxConnections: 100,
    maxConnectionsPerIp: 2,
    metricsPort: 0,
  });
  const msg = (content: string) => ({ user: "u", room: "lobby", content });
  await f.client.sendMessage(msg("first"));
  const second = f.newClient();
  await second.sendMessage(msg("second"));

  // 127.0.0.1 holds its two places: a third connection from it is closed.
  assert.equal(await servedFrom("127.0.0.1", f.core.port), "closed");
  const third = f.newClient();
  const refused = await rejection(
    third.sendMessage(msg("third"), { deadline: Date.now() + 5000 }),
  );
  assert.equal(refused.code, status.UNAVAILABLE, refused.details);
  // Another address has places of its own.
  assert.equal(await servedFrom("127.0.0.2", f.core.port), "served");

  const metrics = await (await fetch(
    `http://127.0.0.1:${f.core.metricsPort}/metrics`,
  )).text();
  const counted = (name: string) =>
    Number(new RegExp(`^${name} (\\d+)$`, "m").exec(metrics)![1]);
  assert.ok(counted("chat_connections_refused_per_ip_total") >= 2, metrics);
  assert.equal(
    counted("chat_connections_refused_total"),
    counted("chat_connections_refused_per_ip_total"),
  );

  // One closes: its place is free for the next connection from 127.0.0.1.
  await servedAgain(f, third, second);
});
