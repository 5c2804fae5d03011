/**
 * The direct HTTP/2 write path (server/grpcjs/raw_stream.ts) is really taken
 * with this grpc-js, keeps order, honours backpressure and the size limit,
 * and falls back to `call.write()` when the internals are not there.
 * Correctness only, no timing.
 */
import assert from "node:assert/strict";
import { EventEmitter } from "node:events";
import { Server, type ServerWritableStream, status } from "@grpc/grpc-js";
import { chatServiceDefinition } from "../rpc/chat_service.ts";
import { frameMessage } from "../server/grpc/framing.ts";
import { encodeMessage } from "../server/grpc/messages.ts";
import {
  type Encode,
  type MessageWriter,
  messageWriter,
  type WritableCall,
} from "../server/grpcjs/raw_stream.ts";
import { rest, serveBare, streamError } from "./support/core.ts";

type Handler = (call: ServerWritableStream<unknown, Uint8Array>) => void;

/** A grpc-js server whose SubscribeMessages runs `handler`. */
async function serve(handler: Handler, options = {}) {
  const server = new Server(options);
  server.addService(chatServiceDefinition, { SubscribeMessages: handler });
  return await serveBare(server);
}

const framed = (content: string) =>
  frameMessage(encodeMessage({ id: content, content, room: "r", user: "u" }));

/** `writeEncoded()`'s arguments for the framed message `framed(content)`. */
const encoded = (content: string): [number, Encode] => {
  const bytes = framed(content);
  return [bytes.length, (out, at) => out.set(bytes, at)];
};

Deno.test("messageWriter() takes the direct path with this grpc-js and keeps order", async () => {
  let writer: MessageWriter | undefined;
  const streamWrites: number[] = [];
  using f = await serve((call) => {
    const http2Stream = (call as unknown as {
      call: { stream: { write(b: Uint8Array): boolean } };
    }).call.stream;
    const write = http2Stream.write;
    http2Stream.write = function (this: unknown, b: Uint8Array) {
      streamWrites.push(b.byteLength);
      return write.call(this, b);
    };
    writer = messageWriter(call);
    for (let i = 0; i < 500; i++) writer.write(framed(`m${i}`));
    // The next turn: the first 500 went out as one HTTP/2 stream write.
    setImmediate(() => {
      for (let i = 500; i < 600; i++) writer!.write(framed(`m${i}`));
      writer!.flush();
      call.end();
    });
  });
  const stream = f.client.subscribeMessages({ room: "r", user: "u" });
  const got = await rest(stream);
  assert.equal(writer?.direct, true, "grpc-js internals changed: fallback");
  assert.deepEqual(
    got.map((m) => m.content),
    Array.from({ length: 600 }, (_, i) => `m${i}`),
  );
  assert.equal(streamWrites.length, 2, `stream writes: ${streamWrites}`);
});

Deno.test("messageWriter() reports backpressure and then 'drain' from the HTTP/2 stream", async () => {
  const big = framed("x".repeat(64 * 1024));
  const seen = { full: false, drained: false };
  using f = await serve((call) => {
    const writer = messageWriter(call);
    seen.full = !writer.write(big);
    const stop = writer.onDrain(() => {
      seen.drained = true;
      stop();
      writer.write(framed("after drain"));
      writer.flush();
      call.end();
    });
  });
  const stream = f.client.subscribeMessages({ room: "r", user: "u" });
  const got = await rest(stream);
  assert.equal(seen.full, true, "a 64 KiB write fills the stream");
  assert.equal(seen.drained, true);
  assert.deepEqual(got.map((m) => m.content.length), [64 * 1024, 11]);
});

Deno.test("messageWriter() over the send limit ends the call with RESOURCE_EXHAUSTED (write() and writeEncoded())", async () => {
  const big = "y".repeat(2000);
  for (
    const send of [
      (w: MessageWriter) => w.write(framed(big)),
      (w: MessageWriter) => w.writeEncoded(...encoded(big)),
    ]
  ) {
    using f = await serve((call) => {
      send(messageWriter(call));
    }, { "grpc.max_send_message_length": 1000 });
    const stream = f.client.subscribeMessages({ room: "r", user: "u" });
    const err = await streamError(stream);
    assert.equal(err.code, status.RESOURCE_EXHAUSTED);
  }
});

Deno.test("messageWriter() falls back to call.write() with the payload", () => {
  const call = new EventEmitter() as WritableCall;
  const written: Uint8Array[] = [];
  call.write = (m) => written.push(m) > 0;
  const writer = messageWriter(call);
  assert.equal(writer.direct, false);
  const payload = encodeMessage({ id: "a", content: "b" });
  writer.write(frameMessage(payload));
  writer.writeEncoded(...encoded("c"));
  assert.deepEqual(written.map((b) => [...b]), [
    [...payload],
    [...encodeMessage({ id: "c", content: "c", room: "r", user: "u" })],
  ]);
  let drained = false;
  const stop = writer.onDrain(() => (drained = true));
  call.emit("drain");
  stop();
  assert.equal(drained, true);
  assert.equal(call.listenerCount("drain"), 0);
});

Deno.test("messageWriter() fires 'drain' itself when it said full but the flush found room", async () => {
  // A stand-in for grpc-js's call layout whose stream always has room.
  const stream = Object.assign(new EventEmitter(), {
    written: [] as Uint8Array[],
    write(b: Uint8Array) {
      stream.written.push(b);
      return true;
    },
    destroyed: false,
    writableEnded: false,
    writableLength: 0,
    writableHighWaterMark: 30,
  });
  const call = Object.assign(new EventEmitter(), {
    write: () => true,
    call: {
      stream,
      cancelled: false,
      incomingEncoding: "identity",
      maxReceiveMessageSize: -1,
      maxSendMessageSize: -1,
      readQueue: [],
      maybeSendMetadata: () => {},
    },
  });
  const writer = messageWriter(call);
  assert.equal(writer.direct, true);
  const drained = Promise.withResolvers<void>();
  writer.onDrain(() => drained.resolve());
  assert.equal(writer.write(framed("a")), true);
  assert.equal(writer.write(framed("b")), false, "pending bytes reach 30");
  await drained.promise;
  assert.equal(stream.written.length, 1, "both went in one stream write");
});

Deno.test("messageWriter().writeEncoded() keeps order with write() across turns, filled buffers and messages larger than one", async () => {
  let writer: MessageWriter | undefined;
  const want: string[] = [];
  // Sizes around the in-place buffers' (256 B doubling to 16 KiB).
  const sizes = [1, 40, 200, 300, 5000, 17_000, 3, 16_000, 90];
  let n = 0;
  const next = (i: number) => {
    const content = `e${n++}:` + "z".repeat(sizes[i % sizes.length]);
    want.push(content);
    return content;
  };
  const turn = (k: number) => {
    for (let i = 0; i < 60; i++) {
      // Mostly encoded in place, now and then a framed buffer between.
      if (i % 7 === 3) writer!.write(framed(next(i + k)));
      else writer!.writeEncoded(...encoded(next(i + k)));
    }
  };
  using f = await serve((call) => {
    writer = messageWriter(call);
    turn(0);
    setImmediate(() => {
      turn(1);
      setImmediate(() => {
        turn(2);
        writer!.flush();
        call.end();
      });
    });
  });
  const got = await rest(f.client.subscribeMessages({ room: "r", user: "u" }));
  assert.equal(writer?.direct, true, "grpc-js internals changed: fallback");
  assert.equal(got.length, want.length);
  got.forEach((m, i) => assert.equal(m.content, want[i], `message ${i}`));
});
