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
