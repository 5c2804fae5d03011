/**
 * The socket write batching fast path is really taken with this grpc-js and
 * Deno, and it keeps every frame (correctness, not timing).
 */
import assert from "node:assert/strict";
import net from "node:net";
import { Server, ServerCredentials } from "@grpc/grpc-js";
import { createChatClient } from "../client/rpc.ts";
import { chatServiceDefinition } from "../rpc/chat_service.ts";
import { enableSocketBatching } from "../server/grpcjs/socket_batching.ts";
import { batchWrites, type CorkableSocket } from "../http2/batch_writes.ts";

Deno.test("enableSocketBatching() hooks grpc-js's listener and a unary call leaves in one writev", async () => {
  const server = new Server();
  server.addService(chatServiceDefinition, {
    SendMessage: (_call: unknown, cb: (e: null, r: object) => void) =>
      cb(null, { messageId: "msg_1" }),
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(
      "127.0.0.1:0",
      ServerCredentials.createInsecure(),
      (err, p) => err ? reject(err) : resolve(p),
    )
  );
  const chunksPerWritev: number[] = [];
  const sockets: CorkableSocket[] = [];
  const hooked = enableSocketBatching(server, {
    onSocket: (socket) => {
      sockets.push(socket);
      type Writev = (chunks: unknown[], cb: unknown) => void;
      const writev = socket._writev as Writev;
      socket._writev = function (
        this: unknown,
        chunks: unknown[],
        cb: unknown,
      ) {
        chunksPerWritev.push(chunks.length);
        return writev.call(this, chunks, cb);
      };
    },
  });
  assert.equal(hooked, 1, "the grpc-js internals changed: fast path is off");

  const client = createChatClient(`127.0.0.1:${port}`);
  try {
    for (let i = 0; i < 3; i++) {
      const res = await client.sendMessage({
        user: "u",
        content: "c",
        room: "r",
      });
      assert.equal(res.messageId, "msg_1");
    }
    assert.equal(sockets.length, 1);
    // HEADERS, DATA and trailers of one response share one syscall.
    assert.ok(
      chunksPerWritev.some((n) => n >= 2),
      `writev chunk counts: ${chunksPerWritev.join(",")}`,
    );
  } finally {
    client.close();
    server.forceShutdown();
  }
});

Deno.test("batchWrites() delivers every chunk in order and refuses a second patch", async () => {
  const received: Uint8Array[] = [];
  const done = Promise.withResolvers<void>();
  const listener = net.createServer((s) => {
    s.on("data", (d: Uint8Array) => received.push(d));
    s.on("end", () => {
      s.end();
      done.resolve();
    });
  });
  await new Promise<void>((r) => listener.listen(0, "127.0.0.1", r));
  const { port } = listener.address() as net.AddressInfo;
  const socket = net.connect(port, "127.0.0.1");
  await new Promise((r) => socket.once("connect", r));
  let writevCalls = 0;
  const writev = socket._writev!;
  socket._writev = function (chunks, cb) {
    writevCalls++;
    return writev.call(this, chunks, cb);
  };
  assert.equal(batchWrites(socket as unknown as CorkableSocket), true);
  assert.equal(batchWrites(socket as unknown as CorkableSocket), false);
  for (const part of ["a", "b", "c", "d"]) socket.write(part);
  assert.equal(socket.writableCorked, 1, "corked until the turn ends");
  await new Promise((r) => setImmediate(r));
  assert.equal(socket.writableCorked, 0);
  assert.equal(writevCalls, 1);
  socket.end();
  await done.promise;
  listener.close();
  const text = new TextDecoder().decode(
    new Uint8Array(received.flatMap((c) => [...c])),
  );
  assert.equal(text, "abcd");
});

Deno.test("batchWrites() leaves an object without cork/_writev alone", () => {
  const fake = { write: () => true } as unknown as CorkableSocket;
  assert.equal(batchWrites(fake), false);
  assert.equal(enableSocketBatching({} as unknown as Server), 0);
});
