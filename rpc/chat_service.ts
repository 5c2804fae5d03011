/**
 * The grpc-js service definition of `chat.ChatService`, built from the
 * protobuf-es descriptors in gen/ (no proto-loader at run time).
 *
 * Shared by the core server, the CLI clients and the benchmark. Serializers
 * accept either a message (plain object or created) or bytes that are already
 * encoded: the server encodes a broadcast once and hands the same bytes to
 * every subscriber, so a `Uint8Array` passes through untouched.
 *
 * @module
 */
import { Buffer } from "node:buffer";
import {
  create,
  type DescMessage,
  type DescMethod,
  fromBinary,
  type MessageShape,
  toBinary,
} from "@bufbuild/protobuf";
import type { ServiceDefinition } from "@grpc/grpc-js";
import { ChatService } from "../gen/chat_pb.ts";

/** Wraps bytes as a Buffer without copying (grpc-js wants Buffers). */
export function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes)
    ? bytes
    : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** Encodes a message, or passes already-encoded bytes through. */
export function serializer<Desc extends DescMessage>(
  schema: Desc,
): (value: MessageShape<Desc> | Uint8Array) => Buffer {
  return (value) => {
    if (value instanceof Uint8Array) return asBuffer(value);
    // grpc-js client callers pass plain objects; create() fills defaults so
    // toBinary() sees a complete message.
    const msg = (value as { $typeName?: string }).$typeName === schema.typeName
      ? value
      : create(schema, value as never);
    return asBuffer(toBinary(schema, msg as MessageShape<Desc>));
  };
}

/** Decodes bytes into a message of the schema. */
export function deserializer<Desc extends DescMessage>(
  schema: Desc,
): (bytes: Buffer) => MessageShape<Desc> {
  return (bytes) => fromBinary(schema, bytes);
}

function methodDefinition(method: DescMethod) {
  const kind = method.methodKind;
  return {
    path: `/${method.parent.typeName}/${method.name}`,
    requestStream: kind === "client_streaming" || kind === "bidi_streaming",
    responseStream: kind === "server_streaming" || kind === "bidi_streaming",
    requestSerialize: serializer(method.input),
    requestDeserialize: deserializer(method.input),
    responseSerialize: serializer(method.output),
    responseDeserialize: deserializer(method.output),
    originalName: method.localName,
  };
}

/**
 * `chat.ChatService` for `server.addService()` and
 * `makeGenericClientConstructor()`, keyed by the methods' proto names
 * (`SendMessage`, `SubscribeMessages`, ...).
 */
export const chatServiceDefinition: ServiceDefinition = Object.fromEntries(
  ChatService.methods.map((m) => [m.name, methodDefinition(m)]),
) as ServiceDefinition;

/** Full gRPC paths, e.g. `/chat.ChatService/SendMessage`. */
export const chatPaths: Readonly<Record<string, string>> = Object.freeze(
  Object.fromEntries(
    ChatService.methods.map((
      m,
    ) => [m.name, `/${ChatService.typeName}/${m.name}`]),
  ),
);
