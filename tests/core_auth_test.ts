/**
 * Who may speak, at the core: JWT tokens the tests sign (HS256, ES256)
 * over grpc-js, on every path into the core (the direct unary path, grpc-js's
 * own unary handler for compressed calls, the raw readers of UploadMessages
 * and Chat), room and scope claims, and expiry ending a stream.
 */
import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import { type ServiceError, status } from "@grpc/grpc-js";
import { BinaryWriter, WireType } from "@bufbuild/protobuf/wire";
import { Buffer } from "node:buffer";
import type { JWTPayload } from "jose";
import { chatServiceDefinition } from "../rpc/chat_service.ts";
import { check, healthClient } from "./support/health.ts";
import type { ChatClient, MessageInit } from "../client/rpc.ts";
import { MessageType, type UploadResponse } from "../gen/chat_pb.ts";
import {
  bearer,
  es256Keys,
  hs256,
  SECRET,
  withAuthorization,
} from "./support/auth.ts";
import {
  type CoreFixture,
  rejection,
  startCore,
  streamError,
  take,
} from "./support/core.ts";

const now = () => Math.floor(Date.now() / 1000);

function upload(client: ChatClient, messages: MessageInit[]) {
  return new Promise<UploadResponse>((resolve, reject) => {
    const up = client.uploadMessages((e, r) => e ? reject(e) : resolve(r!));
    for (const m of messages) up.write(m);
    up.end();
  });
}

/** Every call kind of `client`, each expected to fail with `code` and `detail`. */
async function assertEveryCallFails(
  client: ChatClient,
  code: status,
  detail: RegExp,
  request = { user: "alice", room: "lobby", content: "hi" },
) {
  const errors: [string, ServiceError][] = [
    ["SendMessage", await rejection(client.sendMessage(request))],
    [
      "SubscribeMessages",
      await streamError(client.subscribeMessages(request)),
    ],
    ["UploadMessages", await rejection(upload(client, [request]))],
  ];
  const chat = client.chat();
  chat.write(request);
  errors.push(["Chat", await streamError(chat)]);
  if (code === status.UNAUTHENTICATED) {
    errors.push([
      "StreamMetrics",
      await streamError(client.streamMetrics({ intervalSeconds: 1 })),
    ]);
  }
  for (const [method, err] of errors) {
    assert.equal(err.code, code, `${method}: ${err.details}`);
    assert.match(err.details, detail, method);
  }
}

const authed = () => startCore({ jwtSecret: SECRET, jwtLeewaySeconds: 0 });

Deno.test("auth: a call without a token fails UNAUTHENTICATED on every method", async () => {
  await using f = await authed();
  await assertEveryCallFails(f.client, status.UNAUTHENTICATED, /missing token/);
});

Deno.test("auth: a malformed authorization fails UNAUTHENTICATED saying so", async () => {
  await using f = await authed();
  for (
    const value of ["Basic dXNlcjpwdw==", "Bearer not-a-jwt", "Bearer a.b.c"]
  ) {
    const client = f.newClient({
      interceptors: [withAuthorization(value)],
    });
    const err = await rejection(
      client.sendMessage({ user: "alice", room: "lobby", content: "hi" }),
    );
    assert.equal(err.code, status.UNAUTHENTICATED, value);
    assert.match(err.details, /malformed/, value);
  }
});

Deno.test("auth: a bad signature, an expired, not-yet-valid, malformed-nbf or exp-less token each fail UNAUTHENTICATED naming the check", async () => {
  await using f = await authed();
  const cases: [string, Promise<string>, RegExp][] = [
    [
      "signature",
      hs256({ sub: "alice" }, "another-secret-0123456789-0123456789"),
      /bad token signature/,
    ],
    ["exp", hs256({ sub: "alice", exp: now() - 10 }), /token expired/],
    ["nbf", hs256({ sub: "alice", nbf: now() + 600 }), /not yet valid/],
    [
      "nbf not a number",
      // A signer's mistake; jose's types would not let it be written.
      hs256({ sub: "alice", nbf: "tomorrow" } as unknown as JWTPayload),
      /^malformed token: "nbf" claim must be a number$/,
    ],
    ["no exp", hs256({ sub: "alice", exp: undefined }), /token has no exp/],
  ];
  for (const [name, token, detail] of cases) {
    await assertEveryCallFails(
      f.newClient(bearer(await token)),
      status.UNAUTHENTICATED,
      detail,
    );
    assert.ok(true, name);
  }
});

Deno.test("auth: a wrong issuer or audience fails UNAUTHENTICATED naming it", async () => {
  await using f = await startCore({
    jwtSecret: SECRET,
    jwtIssuer: "https://issuer.example",
    jwtAudience: "chat",
  });
  const good = { iss: "https://issuer.example", aud: "chat", sub: "alice" };
  const ok = f.newClient(bearer(await hs256(good)));
  await ok.sendMessage({ user: "alice", room: "lobby", content: "hi" });
  await assertEveryCallFails(
    f.newClient(bearer(await hs256({ ...good, iss: "https://evil" }))),
    status.UNAUTHENTICATED,
    /wrong token issuer/,
  );
  await assertEveryCallFails(
    f.newClient(bearer(await hs256({ ...good, aud: "other" }))),
    status.UNAUTHENTICATED,
    /wrong token audience/,
  );
});

Deno.test("auth: another user's name fails PERMISSION_DENIED on every method", async () => {
  await using f = await authed();
  const client = f.newClient(bearer(await hs256({ sub: "alice" })));
  await assertEveryCallFails(
    client,
    status.PERMISSION_DENIED,
    /token is for user "alice", not "mallory"/,
    { user: "mallory", room: "lobby", content: "hi" },
  );
});

/** A subscriber of `room` as alice, past its welcome. */
async function watch(f: CoreFixture, room: string) {
  const sub = f.newClient(bearer(await hs256({ sub: "watcher" })))
    .subscribeMessages({ room, user: "" });
  const [welcome] = await take(sub, 1);
  assert.match(welcome.content, /watcher/);
  return sub;
}

Deno.test("auth: an empty user is the token's on SendMessage (direct and grpc-js paths), UploadMessages and Chat", async () => {
  await using f = await authed();
  const sub = await watch(f, "lobby");
  const token = await hs256({ sub: "alice" });
  const plain = f.newClient(bearer(token));
  // A compressed request is served by grpc-js's handler, not the direct path.
  const compressed = f.newClient({
    ...bearer(token),
    "grpc.default_compression_algorithm": 2,
  });
  await plain.sendMessage({ user: "", room: "lobby", content: "direct" });
  await compressed.sendMessage({ user: "", room: "lobby", content: "grpc-js" });
  const res = await upload(plain, [
    { id: "u1", user: "", room: "lobby", content: "upload" },
    { id: "u2", user: "alice", room: "lobby", content: "upload named" },
  ]);
  assert.equal(res.messageCount, 2);
  const chat = plain.chat();
  chat.write({ id: "c1", user: "", room: "lobby", content: "chat" });
  const [echo] = await take(chat, 1);
  assert.equal(echo.content, "Echo: chat");
  chat.end();
  const got = await take(sub, 5);
  assert.deepEqual(
    got.map((m) => [m.user, m.content]),
    [
      ["alice", "direct"],
      ["alice", "grpc-js"],
      ["alice", "upload"],
      ["alice", "upload named"],
      ["alice", "chat"],
    ],
  );
  assert.equal(got[2].id, "u1");
  sub.cancel();
});

/** UploadMessages with messages given as raw bytes, under `token`. */
function uploadRaw(f: CoreFixture, token: string, messages: Uint8Array[]) {
  const client = new grpc.Client(
    f.addr,
    grpc.credentials.createInsecure(),
    bearer(token),
  );
  const upload = chatServiceDefinition.UploadMessages;
  return new Promise<unknown>((resolve, reject) => {
    const call = client.makeClientStreamRequest(
      upload.path,
      (bytes: Uint8Array) => Buffer.from(bytes),
      upload.responseDeserialize,
      (err, res) => {
        client.close();
        err ? reject(err) : resolve(res);
      },
    );
    for (const m of messages) call.write(m);
    call.end();
  });
}

Deno.test("auth: a repeated user field counts by its last value, as subscribers read it", async () => {
  await using f = await authed();
  const sub = await watch(f, "lobby");
  const token = await hs256({ sub: "alice" });
  const encode = (users: string[], content: string) => {
    const w = new BinaryWriter();
    for (const u of users) w.tag(2, WireType.LengthDelimited).string(u);
    w.tag(4, WireType.LengthDelimited).string("lobby");
    w.tag(3, WireType.LengthDelimited).string(content);
    return w.finish();
  };
  // Someone else's name, then an empty one: the empty one is filled in.
  await uploadRaw(f, token, [encode(["bob", ""], "filled")]);
  // Empty, then someone else's name: that name is what subscribers see.
  const err = await rejection(
    uploadRaw(f, token, [encode(["", "bob"], "as bob")]),
  );
  assert.equal(err.code, status.PERMISSION_DENIED);
  await uploadRaw(f, token, [encode(["bob", "alice"], "named")]);
  const got = await take(sub, 2);
  assert.deepEqual(got.map((m) => [m.user, m.content]), [
    ["alice", "filled"],
    ["alice", "named"],
  ]);
  sub.cancel();
});

Deno.test("auth: a streamed message that the filled-in user would push past the limit fails for its sender only", async () => {
  // 1 024 bytes on the wire: room (7) + content tag and length (3) + 1 014.
  await using f = await startCore({
    jwtSecret: SECRET,
    maxMessageBytes: 1024,
  });
  const sub = await watch(f, "lobby");
  const alice = f.newClient(bearer(await hs256({ sub: "alice" })));
  const big = { user: "", room: "lobby", content: "x".repeat(1014) };
  const err = await rejection(upload(alice, [big]));
  assert.equal(err.code, status.RESOURCE_EXHAUSTED);
  assert.match(err.details, /message 1: too large to broadcast: 1031 bytes/);
  const chat = alice.chat();
  chat.write(big);
  const chatErr = await streamError(chat);
  assert.equal(chatErr.code, status.RESOURCE_EXHAUSTED);
  // The subscriber is still there and got nothing it could not receive.
  await alice.sendMessage({ user: "", room: "lobby", content: "after" });
  const [next] = await take(sub, 1);
  assert.deepEqual([next.user, next.content], ["alice", "after"]);
  sub.cancel();
});

Deno.test("auth: under a token a streamed JOIN, LEAVE or SYSTEM message is PERMISSION_DENIED, never broadcast", async () => {
  await using f = await authed();
  const sub = await watch(f, "lobby");
  const alice = f.newClient(bearer(await hs256({ sub: "alice" })));
  const forged = {
    user: "",
    room: "lobby",
    content: "Server restarting, sign in again at evil.example",
    type: MessageType.SYSTEM,
  };
  const err = await rejection(upload(alice, [forged]));
  assert.equal(err.code, status.PERMISSION_DENIED);
  assert.match(err.details, /message 1: only CHAT messages may be posted/);
  const chat = alice.chat();
  chat.write({ ...forged, type: MessageType.JOIN });
  assert.equal((await streamError(chat)).code, status.PERMISSION_DENIED);
  await upload(alice, [{ user: "", room: "lobby", content: "plain" }]);
  const [next] = await take(sub, 1);
  assert.deepEqual([next.type, next.content], [MessageType.CHAT, "plain"]);
  sub.cancel();
});

Deno.test("auth: the rooms claim allows names and prefix* patterns, PERMISSION_DENIED outside", async () => {
  await using f = await authed();
  const client = f.newClient(
    bearer(await hs256({ sub: "alice", rooms: ["lobby", "team-*"] })),
  );
  await client.sendMessage({ user: "", room: "lobby", content: "ok" });
  await client.sendMessage({ user: "", room: "team-a", content: "ok" });
  const sub = client.subscribeMessages({ room: "team-b", user: "" });
  await take(sub, 1);
  sub.cancel();
  await assertEveryCallFails(
    client,
    status.PERMISSION_DENIED,
    /does not allow room "lobby2"/,
    { user: "", room: "lobby2", content: "no" },
  );
});

Deno.test("auth: the scope claim limits a token to publish or subscribe", async () => {
  await using f = await authed();
  const publisher = f.newClient(
    bearer(await hs256({ sub: "alice", scope: "publish" })),
  );
  await publisher.sendMessage({ user: "", room: "lobby", content: "ok" });
  const denied = await streamError(
    publisher.subscribeMessages({ room: "lobby", user: "" }),
  );
  assert.equal(denied.code, status.PERMISSION_DENIED);
  assert.match(denied.details, /scope does not allow subscribe/);

  const reader = f.newClient(
    bearer(await hs256({ sub: "bob", scope: "subscribe other:thing" })),
  );
  const sub = reader.subscribeMessages({ room: "lobby", user: "" });
  await take(sub, 1);
  sub.cancel();
  const err = await rejection(
    reader.sendMessage({ user: "", room: "lobby", content: "no" }),
  );
  assert.equal(err.code, status.PERMISSION_DENIED);
  assert.match(err.details, /scope does not allow publish/);
  const chat = reader.chat();
  chat.write({ user: "", room: "lobby", content: "no" });
  assert.equal((await streamError(chat)).code, status.PERMISSION_DENIED);
});

Deno.test("auth: SubscribeMessages, Chat and UploadMessages streams end UNAUTHENTICATED when the token expires", async () => {
  await using f = await authed();
  const client = f.newClient(
    bearer(await hs256({ sub: "alice", exp: now() + 2 })),
  );
  const sub = client.subscribeMessages({ room: "lobby", user: "" });
  await take(sub, 1);
  const chat = client.chat();
  chat.write({ user: "", room: "lobby", content: "before" });
  await take(chat, 1);
  const uploaded = rejection(
    new Promise((resolve, reject) => {
      const up = client.uploadMessages((e, r) => e ? reject(e) : resolve(r));
      up.write({ user: "", room: "lobby", content: "then silence" });
    }),
  );
  const started = Date.now();
  const [subErr, chatErr, uploadErr] = await Promise.all([
    streamError(sub, 5000),
    streamError(chat, 5000),
    uploaded,
  ]);
  for (const err of [subErr, chatErr, uploadErr]) {
    assert.equal(err.code, status.UNAUTHENTICATED);
    assert.match(err.details, /token expired/);
  }
  assert.ok(Date.now() - started < 4000);
  assert.equal(f.core.snapshot().subscribers, 0);
});

Deno.test("auth: an ES256 public key verifies ES256 tokens and refuses HS256 ones", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const keys = await es256Keys(dir);
    await using f = await startCore({ jwtPublicKey: keys.publicKeyFile });
    const sub = f.newClient(bearer(await keys.sign({ sub: "watcher" })))
      .subscribeMessages({ room: "lobby", user: "" });
    await take(sub, 1);
    const alice = f.newClient(bearer(await keys.sign({ sub: "alice" })));
    await alice.sendMessage({ user: "", room: "lobby", content: "signed" });
    const [m] = await take(sub, 1);
    assert.deepEqual([m.user, m.content], ["alice", "signed"]);
    sub.cancel();
    await assertEveryCallFails(
      f.newClient(bearer(await hs256({ sub: "alice" }))),
      status.UNAUTHENTICATED,
      /algorithm not allowed/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("auth: StreamMetrics takes any valid token", async () => {
  await using f = await authed();
  const client = f.newClient(
    bearer(await hs256({ sub: "ops", rooms: [], scope: "" })),
  );
  const metrics = client.streamMetrics({ intervalSeconds: 1 });
  const [first] = await take(metrics, 1, 3000);
  assert.ok(first.name);
  metrics.cancel();
});

Deno.test("auth: an open core ignores tokens and lets anyone name any user", async () => {
  await using f = await startCore();
  const client = f.newClient(bearer("not even a token"));
  await client.sendMessage({ user: "mallory", room: "lobby", content: "hi" });
  const err = await rejection(
    client.sendMessage({ user: "", room: "lobby", content: "hi" }),
  );
  assert.equal(err.code, status.INVALID_ARGUMENT);
});

Deno.test("auth: a token for a name the server speaks as (System, Server) is PERMISSION_DENIED", async () => {
  await using f = await authed();
  for (const sub of ["System", "Server"]) {
    await assertEveryCallFails(
      f.newClient(bearer(await hs256({ sub }))),
      status.PERMISSION_DENIED,
      /reserved for the server/,
      { user: "", room: "lobby", content: "hi" },
    );
  }
});

Deno.test("auth: health and reflection answer without a token while every ChatService call needs one", async () => {
  await using f = await startCore({
    jwtSecret: SECRET,
    jwtLeewaySeconds: 0,
    presence: true,
  });
  const health = healthClient(f.addr);
  const raw = new grpc.Client(f.addr, grpc.credentials.createInsecure());
  try {
    // Probes and tooling carry no token: both answer.
    assert.equal(await check(health, ""), "SERVING");
    assert.equal(await check(health, "chat.ChatService"), "SERVING");
    const reflection = raw.makeBidiStreamRequest(
      "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
      (b: Buffer) => b,
      (b: Buffer) => b,
    );
    reflection.write(
      Buffer.from(
        new BinaryWriter().tag(7, WireType.LengthDelimited).string("*")
          .finish(),
      ),
    );
    const [listed] = await take<Buffer>(reflection, 1);
    reflection.end();
    assert.ok(
      Buffer.from(listed).includes("chat.ChatService"),
      "reflection lists chat.ChatService",
    );
    // The chat service does not, ListPresence included.
    await assertEveryCallFails(
      f.client,
      status.UNAUTHENTICATED,
      /missing token/,
    );
    const presence = await rejection(f.client.listPresence({ room: "lobby" }));
    assert.equal(presence.code, status.UNAUTHENTICATED, presence.details);
    // With a token, ListPresence is allowed for the rooms it may subscribe to.
    const lobby = f.newClient(
      bearer(await hs256({ sub: "ann", rooms: ["lobby"] })),
    );
    assert.deepEqual((await lobby.listPresence({ room: "lobby" })).users, []);
    const other = await rejection(lobby.listPresence({ room: "other" }));
    assert.equal(other.code, status.PERMISSION_DENIED, other.details);
    const publishOnly = f.newClient(
      bearer(await hs256({ sub: "ann", scope: "publish" })),
    );
    const denied = await rejection(publishOnly.listPresence({ room: "lobby" }));
    assert.equal(denied.code, status.PERMISSION_DENIED, denied.details);
  } finally {
    health.close();
    raw.close();
  }
});
