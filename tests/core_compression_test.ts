/**
 * The core with gzip-compressing grpc-js clients
 * (`grpc.default_compression_algorithm` = gzip): every call kind works, the
 * fast paths (direct unary, direct reader, direct writer) hand compressed
 * requests to grpc-js, and a gzip bomb ends with RESOURCE_EXHAUSTED at the
 * message limit.
 *
 * @module
 */
import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import { rejection, startCore, take } from "./support/core.ts";

const GZIP = {
  "grpc.default_compression_algorithm": 2,
  "grpc.default_compression_level": 2,
};
const BIG = "gzip me ".repeat(2000);

Deno.test("core serves gzip-compressing grpc-js clients on every call kind", async () => {
  await using f = await startCore({ aliveIntervalMs: 0 });
  const zipped = f.newClient(GZIP);
  const sub = zipped.subscribeMessages({ room: "z", user: "watch" });
  const [welcome] = await take(sub, 1);
  assert.match(welcome.content, /Welcome/);

  const sent = await zipped.sendMessage({ user: "u", room: "z", content: BIG });
  assert.match(sent.messageId, /^msg_/);
  const [got] = await take(sub, 1);
  assert.equal(got.content, BIG);

  const count = await new Promise<number>((resolve, reject) => {
    const call = zipped.uploadMessages((err, res) =>
      err ? reject(err) : resolve(res!.messageCount)
    );
    for (let i = 0; i < 3; i++) {
      call.write({ user: "u", room: "z", content: `${i}${BIG}` });
    }
    call.end();
  });
  assert.equal(count, 3);
  const uploaded = await take(sub, 3);
  assert.deepEqual(uploaded.map((m) => m.content[0]), ["0", "1", "2"]);

  const chat = zipped.chat();
  chat.write({ id: "1", user: "u", room: "z", content: BIG });
  const [echo] = await take(chat, 1);
  assert.equal(echo.content, `Echo: ${BIG}`);
  chat.end();
  sub.cancel();
});

Deno.test("core: a gzip bomb ends with RESOURCE_EXHAUSTED, unary and streaming", async () => {
  await using f = await startCore({
    aliveIntervalMs: 0,
    maxMessageBytes: 64 * 1024,
  });
  const zipped = f.newClient(GZIP);
  // 8 MiB of one letter gzips to a few KiB: small on the wire, big inside.
  const bomb = "a".repeat(8 * 1024 * 1024);
  const err = await rejection(
    zipped.sendMessage({ user: "u", room: "r", content: bomb }),
  );
  assert.equal(err.code, grpc.status.RESOURCE_EXHAUSTED, err.message);

  const e = await new Promise<grpc.ServiceError | null>((resolve) => {
    const call = zipped.uploadMessages((err) => resolve(err));
    call.write({ user: "u", room: "r", content: bomb });
    call.end();
  });
  assert.ok(e, "the upload must fail");
  assert.equal(e.code, grpc.status.RESOURCE_EXHAUSTED, e.message);

  // The core still serves.
  const ok = await zipped.sendMessage({ user: "u", room: "r", content: "x" });
  assert.match(ok.messageId, /^msg_/);
});
