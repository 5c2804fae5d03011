/**
 * ListPresence on one core: who is subscribed to a room, with how many
 * subscriptions, and nobody once they leave. Across cores on a broker:
 * tests/scale_out_test.ts.
 */
import assert from "node:assert/strict";
import { status } from "@grpc/grpc-js";
import { rejection, startCore, take } from "./support/core.ts";
import { bearer, hs256, SECRET } from "./support/auth.ts";
import { startRedisServer } from "../tools/serve/redis.ts";
import { type Message, MessageType } from "../gen/chat_pb.ts";

Deno.test("ListPresence lists a room's subscribers with their connection counts and forgets those who left", async () => {
  await using f = await startCore({ presence: true, aliveIntervalMs: 0 });
  const subs = ["ann", "ann", "bob"].map((user) =>
    f.client.subscribeMessages({ room: "p", user })
  );
  for (const s of subs) await take(s, 1);
  const listed = await f.client.listPresence({ room: "p" });
  assert.deepEqual(
    listed.users.map((u) => ({ user: u.user, connections: u.connections })),
    [{ user: "ann", connections: 2 }, { user: "bob", connections: 1 }],
  );
  assert.deepEqual((await f.client.listPresence({ room: "empty" })).users, []);
  subs[2].cancel();
  subs[0].cancel();
  const until = Date.now() + 3000;
  let users = (await f.client.listPresence({ room: "p" })).users;
  while (users.length !== 1 || users[0].connections !== 1) {
    assert.ok(Date.now() < until, `still listed: ${JSON.stringify(users)}`);
    await new Promise((r) => setTimeout(r, 20));
    users = (await f.client.listPresence({ room: "p" })).users;
  }
  assert.equal(users[0].user, "ann");
  subs[1].cancel();
  const err = await rejection(f.client.listPresence({ room: " " }));
  assert.equal(err.code, status.INVALID_ARGUMENT);
  assert.equal(err.details, "room is required");
});

Deno.test("ListPresence without --presence is FAILED_PRECONDITION naming the flag", async () => {
  await using f = await startCore({ aliveIntervalMs: 0 });
  const err = await rejection(f.client.listPresence({ room: "p" }));
  assert.equal(err.code, status.FAILED_PRECONDITION);
  assert.match(err.details, /--presence/);
});

Deno.test("ListPresence with auth on: no or a bad token is UNAUTHENTICATED; a token without the room or the subscribe scope is PERMISSION_DENIED; a token that may subscribe lists", async () => {
  await using f = await startCore({
    presence: true,
    aliveIntervalMs: 0,
    jwtSecret: SECRET,
  });
  const alice = f.newClient(bearer(await hs256({ sub: "alice" })));
  const sub = alice.subscribeMessages({ room: "secret", user: "alice" });
  await take(sub, 1);
  const refused = async (
    client: typeof alice,
    code: status,
    detail: RegExp,
  ) => {
    const err = await rejection(client.listPresence({ room: "secret" }));
    assert.equal(err.code, code, err.details);
    assert.match(err.details, detail);
  };
  await refused(f.client, status.UNAUTHENTICATED, /missing token/);
  await refused(
    f.newClient(bearer("garbage")),
    status.UNAUTHENTICATED,
    /malformed authorization/,
  );
  await refused(
    f.newClient(
      bearer(
        await hs256({ sub: "bob" }, "another-secret-0123456789-0123456789"),
      ),
    ),
    status.UNAUTHENTICATED,
    /signature/,
  );
  await refused(
    f.newClient(bearer(await hs256({ sub: "bob", rooms: ["team-*"] }))),
    status.PERMISSION_DENIED,
    /room "secret"/,
  );
  await refused(
    f.newClient(bearer(await hs256({ sub: "bob", scope: "publish" }))),
    status.PERMISSION_DENIED,
    /scope does not allow subscribe/,
  );
  const listed = await f.newClient(bearer(await hs256({ sub: "bob" })))
    .listPresence({ room: "secret" });
  assert.deepEqual(listed.users.map((u) => u.user), ["alice"]);
  sub.cancel();
});

Deno.test("ListPresence with auth on and presence off asks for a token first", async () => {
  await using f = await startCore({ aliveIntervalMs: 0, jwtSecret: SECRET });
  const err = await rejection(f.client.listPresence({ room: "p" }));
  assert.equal(err.code, status.UNAUTHENTICATED);
});

Deno.test("ListPresence takes a token of the caller's rate bucket: past the burst it is RESOURCE_EXHAUSTED", async () => {
  await using f = await startCore({
    presence: true,
    aliveIntervalMs: 0,
    rateLimit: 1,
    rateBurst: 2,
  });
  await f.client.listPresence({ room: "p" });
  await f.client.listPresence({ room: "p" });
  const err = await rejection(f.client.listPresence({ room: "p" }));
  assert.equal(err.code, status.RESOURCE_EXHAUSTED);
  assert.match(err.details, /rate limit exceeded/);
});

Deno.test("with --presence on a broker, the newcomer gets the welcome, then its own JOIN live, as with the embedded store", async () => {
  await using redis = await startRedisServer();
  for (let round = 0; round < 3; round++) {
    await using f = await startCore({
      presence: true,
      aliveIntervalMs: 0,
      broker: redis.url,
    });
    // A new room each round: the position comes from Redis.
    const s = f.client.subscribeMessages({ room: `b${round}`, user: "ann" });
    const [welcome, join] = await take<Message>(s, 2);
    assert.equal(welcome.type, MessageType.SYSTEM);
    assert.equal(join.type, MessageType.JOIN);
    assert.equal(join.user, "ann");
    assert.equal(join.offset, welcome.offset + 1n);
    s.cancel();
  }
});
