/**
 * Server reflection on the core (server/ops/reflection.ts), used the way an
 * operator would, with no .proto at hand: `buf curl` lists the services and
 * calls SendMessage through reflection (v1, and v1alpha for older tools),
 * and a grpc-js client reads the descriptors over ServerReflectionInfo,
 * builds chat.ChatService from them with protobuf-es and makes a call.
 * Runs on both transports (tests/core_transports_test.ts).
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import * as grpc from "@grpc/grpc-js";
import {
  create,
  createFileRegistry,
  fromBinary,
  toBinary,
} from "@bufbuild/protobuf";
import { BinaryReader, BinaryWriter, WireType } from "@bufbuild/protobuf/wire";
import {
  FileDescriptorProtoSchema,
  FileDescriptorSetSchema,
} from "@bufbuild/protobuf/wkt";
import {
  CLIENT_PREFACE,
  FrameType,
  readUint32,
  Setting,
  settingsFrame,
} from "../protocol/http2/frames.ts";
import { encodeEnvelope } from "../protocol/mod.ts";
import { frame, PeerConnection } from "./fixtures/h2_raw_peer.ts";
import { startCore, take } from "./support/core.ts";

const BUF = "npm:@bufbuild/buf@1.74.0";

/** Runs `buf curl` against the core; returns stdout, failing on a non-zero exit. */
async function bufCurl(args: string[]): Promise<string> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      BUF,
      "curl",
      "--protocol",
      "grpc",
      "--http2-prior-knowledge",
      ...args,
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout);
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr) + text);
  return text;
}

Deno.test("buf curl lists the services and methods and calls SendMessage by reflection alone", async () => {
  await using f = await startCore();
  const url = `http://${f.addr}`;
  const services = (await bufCurl(["--list-services", url])).trim().split("\n");
  assert.deepEqual(services.sort(), [
    "chat.ChatService",
    "grpc.health.v1.Health",
  ]);
  const methods = (await bufCurl([
    "--reflect-protocol",
    "grpc-v1alpha",
    "--list-methods",
    url,
  ])).trim().split("\n");
  for (
    const m of [
      "chat.ChatService/SendMessage",
      "chat.ChatService/Chat",
      "grpc.health.v1.Health/Watch",
    ]
  ) assert.ok(methods.includes(m), `${m} in ${methods}`);
  const answer = JSON.parse(
    await bufCurl([
      "-d",
      '{"user":"ops","room":"r","content":"hello"}',
      `${url}/chat.ChatService/SendMessage`,
    ]),
  );
  assert.match(answer.messageId, /^msg_\d+$/);
  const health = JSON.parse(
    await bufCurl([`${url}/grpc.health.v1.Health/Check`]),
  );
  assert.deepEqual(health, { status: "SERVING" });
});

/** ServerReflectionRequest: field 4 file_containing_symbol, 7 list_services. */
function reflectionRequest(field: 4 | 7, value: string): Buffer {
  return Buffer.from(
    new BinaryWriter().tag(field, WireType.LengthDelimited).string(value)
      .finish(),
  );
}

interface ReflectionAnswer {
  services: string[];
  files: Uint8Array[];
  error?: string;
}

/** The parts of a ServerReflectionResponse this test reads. */
function reflectionAnswer(bytes: Buffer): ReflectionAnswer {
  const answer: ReflectionAnswer = { services: [], files: [] };
  const reader = new BinaryReader(bytes);
  while (reader.pos < reader.len) {
    const [field, type] = reader.tag();
    if (field === 4 || field === 6 || field === 7) {
      const inner = new BinaryReader(reader.bytes());
      while (inner.pos < inner.len) {
        const [f, t] = inner.tag();
        if (field === 4 && f === 1) answer.files.push(inner.bytes());
        else if (field === 6 && f === 1) {
          const service = new BinaryReader(inner.bytes());
          service.tag();
          answer.services.push(service.string());
        } else if (field === 7 && f === 2) answer.error = inner.string();
        else inner.skip(t);
      }
    } else reader.skip(type);
  }
  return answer;
}

Deno.test("a grpc-js client builds chat.ChatService from reflection and calls it", async () => {
  await using f = await startCore();
  const raw = new grpc.Client(f.addr, grpc.credentials.createInsecure());
  try {
    const stream = raw.makeBidiStreamRequest(
      "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
      (b: Buffer) => b,
      reflectionAnswer,
    );
    stream.write(reflectionRequest(7, "*"));
    stream.write(reflectionRequest(4, "chat.ChatService"));
    stream.write(reflectionRequest(4, "no.Such"));
    const [list, files, missing] = await take<ReflectionAnswer>(stream, 3);
    stream.end();
    assert.deepEqual(list.services.sort(), [
      "chat.ChatService",
      "grpc.health.v1.Health",
    ]);
    assert.match(missing.error ?? "", /no\.Such/);
    const registry = createFileRegistry(
      create(FileDescriptorSetSchema, {
        // The file first, then its imports; the registry wants imports first.
        file: files.files.map((b) => fromBinary(FileDescriptorProtoSchema, b))
          .reverse(),
      }),
    );
    const service = registry.getService("chat.ChatService");
    assert.ok(service, "chat.ChatService in the reflected files");
    const send = service.methods.find((m) => m.name === "SendMessage")!;
    const reply = await new Promise<Record<string, unknown>>((
      resolve,
      reject,
    ) =>
      raw.makeUnaryRequest(
        `/${service.typeName}/${send.name}`,
        (msg: ReturnType<typeof create>) =>
          Buffer.from(toBinary(send.input, msg)),
        (b: Buffer) =>
          fromBinary(send.output, b) as unknown as Record<string, unknown>,
        create(send.input, { user: "ops", room: "r", content: "hi" } as never),
        (err, res) => err ? reject(err) : resolve(res!),
      )
    );
    assert.match(String(reply.messageId), /^msg_\d+$/);
  } finally {
    raw.close();
  }
});

Deno.test("a reflection stream open at shutdown ends with UNAVAILABLE at once", async () => {
  const f = await startCore();
  const raw = new grpc.Client(f.addr, grpc.credentials.createInsecure());
  try {
    const stream = raw.makeBidiStreamRequest(
      "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
      (b: Buffer) => b,
      reflectionAnswer,
    );
    stream.write(reflectionRequest(7, "*"));
    assert.equal(
      (await take<ReflectionAnswer>(stream, 1))[0].services.length,
      2,
    );
    const ended = new Promise<grpc.ServiceError>((resolve) =>
      stream.on("error", resolve)
    );
    const t0 = performance.now();
    const stopped = f.core.shutdown(10_000);
    assert.equal((await ended).code, grpc.status.UNAVAILABLE);
    raw.close();
    await stopped;
    assert.ok(
      performance.now() - t0 < 5000,
      "shutdown did not wait out the grace",
    );
  } finally {
    raw.close();
    await f[Symbol.asyncDispose]();
  }
});

Deno.test("a reflection client that sends requests without reading answers is held back by flow control", async () => {
  await using f = await startCore({ transport: "h2" });
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: f.core.port });
  const peer = new PeerConnection(conn);
  try {
    // Our window for the server's DATA is 0: no answer can ever be sent.
    await peer.write(
      CLIENT_PREFACE,
      settingsFrame([[Setting.INITIAL_WINDOW_SIZE, 0]]),
    );
    const settings = await peer.next();
    assert.equal(settings?.type, FrameType.SETTINGS);
    let streamWindow = 65535;
    for (let at = 0; at + 6 <= settings!.payload.byteLength; at += 6) {
      const id = (settings!.payload[at] << 8) | settings!.payload[at + 1];
      if (id === Setting.INITIAL_WINDOW_SIZE) {
        streamWindow = readUint32(settings!.payload, at + 2);
      }
    }
    let connWindow = 65535;
    await peer.write(
      settingsFrame([], true),
      peer.headers(1, [
        [":method", "POST"],
        [":scheme", "http"],
        [":path", "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"],
        [":authority", "core"],
        ["content-type", "application/grpc"],
        ["te", "trailers"],
      ]),
    );
    let grew: () => void = () => {};
    const reading = (async () => {
      for (;;) {
        const fr = await peer.next();
        if (fr === null) return;
        if (fr.type === FrameType.WINDOW_UPDATE) {
          const n = readUint32(fr.payload, 0) & 0x7fffffff;
          if (fr.streamId === 0) connWindow += n;
          else if (fr.streamId === 1) streamWindow += n;
          grew();
        }
      }
    })();
    // list_services "*": 8 bytes a request, 2048 to a 16 KiB DATA frame.
    const one = encodeEnvelope(0, reflectionRequest(7, "*"));
    const full = new Uint8Array(16384);
    for (let i = 0; i < 2048; i++) full.set(one, i * one.byteLength);
    const LIMIT = 8 << 20;
    let sent = 0;
    let blocked = false;
    while (sent < LIMIT) {
      const room = Math.min(full.byteLength, streamWindow, connWindow);
      const bytes = room - (room % one.byteLength);
      if (bytes === 0) {
        // Wait up to a second for the server to read on and reopen windows.
        const more = await new Promise<boolean>((resolve) => {
          const timer = setTimeout(() => resolve(false), 1000);
          grew = () => {
            clearTimeout(timer);
            resolve(true);
          };
        });
        grew = () => {};
        if (!more) {
          blocked = true;
          break;
        }
        continue;
      }
      await peer.write(
        frame(FrameType.DATA, 0, 1, full.subarray(0, bytes)),
      );
      streamWindow -= bytes;
      connWindow -= bytes;
      sent += bytes;
    }
    assert.ok(blocked, `the server read all ${sent} bytes of requests`);
    // The stream's receive window (1 MiB) and a little more, not all of it.
    assert.ok(sent <= 2 << 20, `the server took ${sent} bytes`);
    // The core serves everyone else meanwhile.
    const reply = await f.client.sendMessage({
      user: "u",
      room: "r",
      content: "c",
    });
    assert.match(reply.messageId, /^msg_\d+$/);
    conn.close();
    await reading.catch(() => {});
  } finally {
    try {
      conn.close();
    } catch { /* closed */ }
  }
});
