/**
 * The core's own HTTP/2 server against independent HTTP/2 clients: curl
 * (`--http2-prior-knowledge`) and nghttp2's h2load, which opens 100 streams
 * per connection and ends each connection with GOAWAY, the pattern that
 * aborts Deno's node:http2 server (docs/goaway.md).
 */
import assert from "node:assert/strict";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import {
  SendMessageRequestSchema,
  SendMessageResponseSchema,
} from "../gen/chat_pb.ts";
import { encodeEnvelope } from "../protocol/mod.ts";
import { chatPaths } from "../rpc/chat_service.ts";
import { eventually, startCore } from "./support/core.ts";

function requestFile(content: string, room: string): string {
  const path = Deno.makeTempFileSync({ suffix: ".bin" });
  const body = toBinary(
    SendMessageRequestSchema,
    create(SendMessageRequestSchema, { user: "interop", content, room }),
  );
  Deno.writeFileSync(path, encodeEnvelope(0, body));
  return path;
}

async function run(cmd: string, args: string[]) {
  const out = await new Deno.Command(cmd, {
    args,
    stdout: "piped",
    stderr: "piped",
  }).output();
  return {
    code: out.code,
    stdout: out.stdout,
    text: new TextDecoder().decode(out.stdout) +
      new TextDecoder().decode(out.stderr),
  };
}

Deno.test("curl --http2-prior-knowledge: SendMessage answers 200, a message and trailers with grpc-status 0", async () => {
  await using f = await startCore({ transport: "h2" });
  const file = requestFile("from curl", "interop");
  const headers = Deno.makeTempFileSync();
  try {
    const url = `http://${f.addr}${chatPaths.SendMessage}`;
    const common = ["-sS", "--http2-prior-knowledge", "--data-binary"];
    const ok = await run("curl", [
      ...common,
      `@${file}`,
      "-D",
      headers,
      "-H",
      "content-type: application/grpc",
      "-H",
      "te: trailers",
      url,
    ]);
    assert.equal(ok.code, 0, ok.text);
    const head = Deno.readTextFileSync(headers);
    assert.match(head, /^HTTP\/2 200/);
    assert.match(head, /content-type: application\/grpc\+proto/);
    assert.match(head, /grpc-status: 0/, "trailers reach curl");
    const body = ok.stdout;
    assert.equal(body[0], 0, "uncompressed");
    const length = new DataView(body.buffer, body.byteOffset).getUint32(1);
    assert.equal(body.byteLength, 5 + length);
    const reply = fromBinary(SendMessageResponseSchema, body.subarray(5));
    assert.match(reply.messageId, /^msg_\d+$/);

    const plain = await run("curl", [
      ...common,
      `@${file}`,
      "-o",
      "/dev/null",
      "-w",
      "%{http_code}",
      "-H",
      "content-type: text/plain",
      url,
    ]);
    assert.equal(plain.text.trim(), "415");
  } finally {
    Deno.removeSync(file);
    Deno.removeSync(headers);
  }
});

Deno.test("h2load: 4000 SendMessage calls, 100 streams per connection, every one answered and broadcast", async () => {
  await using f = await startCore({ transport: "h2" });
  const sub = f.client.subscribeMessages({ room: "h2load", user: "watch" });
  let received = 0;
  sub.on("data", (m: { content: string }) => {
    if (m.content === "from h2load") received++;
  });
  sub.on("error", () => {});
  await eventually(() => f.core.snapshot().subscribers === 1, "subscribed");
  const file = requestFile("from h2load", "h2load");
  try {
    // Two rounds: each ends its connections with GOAWAY.
    for (let round = 0; round < 2; round++) {
      const res = await run("h2load", [
        "-n",
        "2000",
        "-c",
        "4",
        "-m",
        "100",
        "-d",
        file,
        "-H",
        "content-type: application/grpc",
        "-H",
        "te: trailers",
        `http://${f.addr}${chatPaths.SendMessage}`,
      ]);
      assert.equal(res.code, 0, res.text);
      assert.match(
        res.text,
        /requests: 2000 total, 2000 started, 2000 done, 2000 succeeded, 0 failed, 0 errored, 0 timeout/,
        res.text,
      );
      assert.match(res.text, /status codes: 2000 2xx/);
    }
  } finally {
    Deno.removeSync(file);
  }
  // The in-process subscriber reads slower than h2load publishes: what its
  // bounded queue could not hold is dropped and counted (the drop policy).
  await eventually(
    () => received + f.core.snapshot().dropped === 4000,
    `4000 broadcasts delivered or counted as dropped (${received} + ${f.core.snapshot().dropped})`,
  );
  assert.ok(received >= 100, `only ${received} delivered`);
  sub.cancel();
  await eventually(() => f.core.snapshot().subscribers === 0, "unsubscribed");
});

/** nghttp -v's HEADERS frames received and the grpc-status lines. */
async function nghttpCalls(addr: string, file: string, tableSize: number) {
  const res = await run("nghttp", [
    "-nv",
    "-m",
    "3",
    "-c",
    String(tableSize),
    "-d",
    file,
    "-H",
    "content-type: application/grpc",
    "-H",
    "te: trailers",
    `http://${addr}${chatPaths.SendMessage}`,
  ]);
  assert.equal(res.code, 0, res.text);
  const lengths = [...res.text.matchAll(
    /recv HEADERS frame <length=(\d+), flags=0x0([45])/g,
  )].map((m) => ({ length: Number(m[1]), end: m[2] === "5" }));
  const statuses = [
    ...res.text.matchAll(/recv \(stream_id=\d+\) grpc-status: (\d+)/g),
  ]
    .map((m) => m[1]);
  return {
    text: res.text,
    headers: lengths.filter((l) => !l.end).map((l) => l.length),
    trailers: lengths.filter((l) => l.end).map((l) => l.length),
    statuses,
  };
}

Deno.test("nghttp: constant response headers and OK trailers enter the client's HPACK table once, then cost an octet a field", async () => {
  await using f = await startCore({ transport: "h2" });
  const file = requestFile("from nghttp", "hpack");
  try {
    // Default table (4096): the first answer inserts, the next two index.
    const indexed = await nghttpCalls(f.addr, file, 4096);
    assert.deepEqual(indexed.statuses, ["0", "0", "0"], indexed.text);
    assert.equal(indexed.headers.length, 3, indexed.text);
    assert.ok(indexed.headers[0] > 40, indexed.text);
    // :status 200 (static) and three dynamic entries.
    assert.deepEqual(indexed.headers.slice(1), [4, 4], indexed.text);
    assert.ok(indexed.trailers[0] > 20, indexed.text);
    assert.deepEqual(indexed.trailers.slice(1), [2, 2], indexed.text);
    // A client with no table (SETTINGS_HEADER_TABLE_SIZE 0): literals
    // throughout, every answer decoded by nghttp2.
    const none = await nghttpCalls(f.addr, file, 0);
    assert.deepEqual(none.statuses, ["0", "0", "0"], none.text);
    assert.ok(none.headers.every((n) => n > 40), none.text);
    assert.ok(none.trailers.every((n) => n > 20), none.text);
  } finally {
    Deno.removeSync(file);
  }
});
