/**
 * inboundPosts() (server/grpc/inbound_posts.ts): under a token, a message
 * with an empty user is broadcast with the token's user appended, in
 * copies cut from a shared slab; those copies must stay whole however many
 * are held at once.
 */
import assert from "node:assert/strict";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { MessageSchema } from "../../gen/chat_pb.ts";
import { Access } from "../auth/access.ts";
import { ChatError } from "../rooms/errors.ts";
import type { HandlerContext } from "./context.ts";
import { inboundPosts } from "./inbound_posts.ts";
import { decodePostHead } from "./post_decoder.ts";
import { createMemoryStore } from "../store/memory_store.ts";

const grant = { user: "alice", publish: true, subscribe: true };
const caller = { grant, key: "alice" };

function context(maxMessageBytes: number): HandlerContext {
  return {
    access: new Access(),
    config: { maxMessageBytes },
  } as unknown as HandlerContext;
}

function post(content: string, user = ""): Uint8Array {
  return toBinary(
    MessageSchema,
    create(MessageSchema, { user, room: "lobby", content }),
  );
}

Deno.test("inboundPosts: copies with the token's user stay whole across slabs", () => {
  const posts = inboundPosts(context(1 << 20), caller);
  // ~3 MiB of copies: many 64 KiB slabs, and copies above the slab's
  // largest (4 KiB) in between, all kept until the end as a slow store
  // would keep them.
  const kept: { bytes: Uint8Array; content: string }[] = [];
  for (let i = 0; i < 20_000; i++) {
    const content = i % 1000 === 999
      ? "L".repeat(5000) + i
      : `message ${i} ` + "x".repeat(i % 200);
    const bytes = post(content);
    const out = posts.check(decodePostHead(bytes), bytes, i + 1);
    kept.push({ bytes: out, content });
  }
  for (const { bytes, content } of kept) {
    const m = fromBinary(MessageSchema, bytes);
    assert.equal(m.user, "alice");
    assert.equal(m.content, content);
    assert.equal(m.room, "lobby");
  }
});

Deno.test("inboundPosts: a message naming the token's user is passed on as it came", () => {
  const posts = inboundPosts(context(1 << 20), caller);
  const bytes = post("hi", "alice");
  assert.equal(posts.check(decodePostHead(bytes), bytes), bytes);
});

Deno.test("inboundPosts: another user, or a copy over the limit, is refused", () => {
  const posts = inboundPosts(context(64), caller);
  const other = post("hi", "mallory");
  assert.throws(
    () => posts.check(decodePostHead(other), other, 3),
    (e) => e instanceof ChatError && e.code === "permission_denied",
  );
  // 61 bytes as sent; 68 with the user filled in: over the limit of 64.
  const near = post("y".repeat(52));
  assert.ok(near.byteLength <= 64);
  assert.throws(
    () => posts.check(decodePostHead(near), near, 4),
    (e) =>
      e instanceof ChatError && e.code === "resource_exhausted" &&
      e.message.startsWith("message 4: too large to broadcast"),
  );
});

Deno.test("inboundPosts: two callers' copies, interleaved on the shared slabs, stay whole and their own once a store holds them", () => {
  const bob = { grant: { ...grant, user: "bob" }, key: "bob" };
  const callers = [
    inboundPosts(context(1 << 20), caller),
    inboundPosts(context(1 << 20), bob),
  ];
  const store = createMemoryStore({ size: 100_000, ttlMs: 0 });
  const sent: { user: string; content: string }[] = [];
  // As in the core: the copies of a turn wait for its commit together.
  let turn: { room: string; body: Uint8Array; timeMs: number }[] = [];
  for (let i = 0; i < 30_000; i++) {
    const who = i % 3 === 0 ? 1 : 0;
    const content = `${i}:` + "z".repeat(i % 300);
    const bytes = post(content);
    const out = callers[who].check(decodePostHead(bytes), bytes, i + 1);
    turn.push({ room: "lobby", body: out, timeMs: 0 });
    sent.push({ user: who ? "bob" : "alice", content });
    if (i % 701 === 0 || i === 29_999) {
      store.appendSync!(turn, i + 1);
      turn = [];
    }
  }
  return store.read("lobby", 0, 100_000).then((stored) => {
    assert.equal(stored.length, sent.length);
    stored.forEach((m, i) => {
      const got = fromBinary(MessageSchema, m.body);
      assert.equal(got.user, sent[i].user, `message ${i + 1}`);
      assert.equal(got.content, sent[i].content, `message ${i + 1}`);
    });
    store.close();
  });
});
