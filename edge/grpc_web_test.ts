/**
 * Streamed gRPC-Web responses write every message that piled up as one
 * chunk (MessageQueue.nextBatch): same bytes and order as one envelope per
 * message, binary and text, and fewer body chunks when messages arrive
 * faster than the browser reads.
 */
import assert from "node:assert/strict";
import { createGrpcWebHandler } from "./grpc_web.ts";
import { MessageQueue } from "./upstream/message_queue.ts";
import type {
  CallOptions,
  Upstream,
  UpstreamCall,
  UpstreamStatus,
} from "./upstream/types.ts";
import { grpcWebBody, readGrpcWeb } from "../tests/fixtures/edge_raw.ts";

const m = (n: number) => new TextEncoder().encode(`message ${n}`);

/** An upstream whose one call the test feeds by hand. */
function handUpstream() {
  let resolveStatus!: (s: UpstreamStatus) => void;
  const status = new Promise<UpstreamStatus>((r) => resolveStatus = r);
  const log: string[] = [];
  const queue = new MessageQueue({
    highWaterMark: 1000,
    highWaterBytes: Infinity,
    pause: () => log.push("pause"),
    resume: () => log.push("resume"),
    cancel: () => log.push("cancel"),
  });
  let signal: AbortSignal | undefined;
  const upstream: Upstream = {
    call(_path, _requests, options: CallOptions): UpstreamCall {
      signal = options.signal;
      return { headers: Promise.resolve({}), messages: queue, status };
    },
    healthy: () => Promise.resolve(true),
    close: () => Promise.resolve(),
  };
  return {
    upstream,
    queue,
    end(code = 0) {
      queue.end();
      resolveStatus({ code, message: "", trailers: {} });
    },
    get aborted() {
      return signal?.aborted ?? false;
    },
  };
}

function request(text: boolean): Request {
  return new Request("http://edge.test/chat.ChatService/SubscribeMessages", {
    method: "POST",
    headers: {
      "content-type": text
        ? "application/grpc-web-text"
        : "application/grpc-web+proto",
    },
    body: grpcWebBody([new Uint8Array([0x0a, 0x01, 0x72])], text),
  });
}

for (const text of [false, true]) {
  Deno.test(`gRPC-Web ${text ? "text" : "binary"} stream writes piled-up messages as one chunk, in order`, async () => {
    const up = handUpstream();
    const handle = createGrpcWebHandler(up.upstream, {
      maxMessageBytes: 1 << 20,
    });
    const res = await handle(request(text));
    const reader = res.body!.getReader();

    // Five messages arrive before the body is read: one chunk for all five.
    for (let i = 0; i < 5; i++) up.queue.push(m(i));
    const first = await reader.read();
    // Then one at a time: one chunk each.
    up.queue.push(m(5));
    const second = await reader.read();
    up.queue.push(m(6));
    up.queue.push(m(7));
    up.end();
    const chunks = [first.value!, second.value!];
    for (let r = await reader.read(); !r.done; r = await reader.read()) {
      chunks.push(r.value);
    }
    // 3 message chunks + the trailer frame.
    assert.equal(chunks.length, 4);

    const whole = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
    let at = 0;
    for (const c of chunks) {
      whole.set(c, at);
      at += c.length;
    }
    const got = await readGrpcWeb(
      new Response(whole, { headers: res.headers }),
    );
    assert.equal(got.grpcStatus, 0);
    assert.deepEqual(
      got.messages.map((b) => new TextDecoder().decode(b)),
      Array.from({ length: 8 }, (_, i) => `message ${i}`),
    );
  });
}

Deno.test("gRPC-Web stream: cancelling the body aborts the upstream call", async () => {
  const up = handUpstream();
  const handle = createGrpcWebHandler(up.upstream, {
    maxMessageBytes: 1 << 20,
  });
  const res = await handle(request(false));
  up.queue.push(m(1));
  const reader = res.body!.getReader();
  await reader.read();
  await reader.cancel();
  assert.equal(up.aborted, true);
  up.end(1);
});

Deno.test("MessageQueue.nextBatch() hands over everything queued, resumes a paused producer, ends with undefined", async () => {
  const log: string[] = [];
  const q = new MessageQueue({
    highWaterMark: 4,
    highWaterBytes: Infinity,
    pause: () => log.push("pause"),
    resume: () => log.push("resume"),
    cancel: () => log.push("cancel"),
  });
  for (let i = 0; i < 6; i++) q.push(m(i));
  assert.deepEqual(log, ["pause"]);
  assert.equal((await q.nextBatch())?.length, 6);
  assert.deepEqual(log, ["pause", "resume"]);
  const waiting = q.nextBatch();
  q.push(m(6));
  assert.deepEqual((await waiting)?.map((b) => b.length), [m(6).length]);
  const last = q.nextBatch();
  q.end();
  assert.equal(await last, undefined);
  assert.equal(await q.nextBatch(), undefined);
});
