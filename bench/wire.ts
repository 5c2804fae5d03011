/**
 * Cheap grpc-js calls for the load generator: pre-encoded requests, raw or
 * lazily decoded responses, one connection per channel.
 *
 * The load generator shares a 2-core machine with the server, so every
 * microsecond it spends encoding is a microsecond the measurement loses.
 * Requests are encoded once where they do not vary and responses are decoded
 * only when the scenario needs a field.
 *
 * @module
 */
import * as grpc from "@grpc/grpc-js";
import {
  create,
  type DescMessage,
  type MessageInitShape,
  toBinary,
} from "@bufbuild/protobuf";
import { Buffer } from "node:buffer";
import { chatPaths } from "../rpc/chat_service.ts";

/** Full method paths by proto name, e.g. `paths.SendMessage`. */
export const paths = chatPaths;

/** Bytes in, the same bytes out (requests are encoded by the caller). */
export const identity = (b: Buffer | Uint8Array): Buffer =>
  Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.byteLength);

/** Encodes a plain object of `schema` once, for reuse across calls. */
export function encode<D extends DescMessage>(
  schema: D,
  init: MessageInitShape<D>,
): Buffer {
  return identity(toBinary(schema, create(schema, init)));
}

const channelOptions: grpc.ChannelOptions = {
  // A private subchannel pool per client: K clients are K TCP connections
  // instead of grpc-js sharing one per address.
  "grpc.use_local_subchannel_pool": 1,
  "grpc.max_receive_message_length": 16 << 20,
  "grpc.max_send_message_length": 16 << 20,
};

/** Opens `k` clients to `addr`, each on its own TCP connection, and waits until all are connected. */
export async function connect(
  addr: string,
  k: number,
  timeoutMs = 5000,
): Promise<grpc.Client[]> {
  const clients = Array.from(
    { length: k },
    () =>
      new grpc.Client(addr, grpc.credentials.createInsecure(), channelOptions),
  );
  const deadline = Date.now() + timeoutMs;
  try {
    await Promise.all(
      clients.map((c) =>
        new Promise<void>((resolve, reject) =>
          c.waitForReady(deadline, (err) => err ? reject(err) : resolve())
        )
      ),
    );
  } catch (err) {
    closeAll(clients);
    throw new Error(`connect ${addr}: ${(err as Error).message}`);
  }
  return clients;
}

/** Closes every client. */
export function closeAll(clients: grpc.Client[]): void {
  for (const c of clients) c.close();
}

/** A unary call with pre-encoded request bytes; resolves with the raw response. */
export function unaryRaw(
  client: grpc.Client,
  path: string,
  request: Buffer,
  deadlineMs = 5000,
): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    client.makeUnaryRequest<Buffer, Buffer>(
      path,
      identity,
      identity,
      request,
      new grpc.Metadata(),
      { deadline: Date.now() + deadlineMs },
      (err, res) => err ? reject(err) : resolve(res!),
    );
  });
}

/** A server stream with pre-encoded request bytes and raw response bytes. */
export function serverStreamRaw(
  client: grpc.Client,
  path: string,
  request: Buffer,
  metadata: grpc.Metadata = new grpc.Metadata(),
): grpc.ClientReadableStream<Buffer> {
  return client.makeServerStreamRequest<Buffer, Buffer>(
    path,
    identity,
    identity,
    request,
    metadata,
  );
}

/** A bidi stream of raw bytes both ways. */
export function bidiRaw(
  client: grpc.Client,
  path: string,
): grpc.ClientDuplexStream<Buffer, Buffer> {
  return client.makeBidiStreamRequest<Buffer, Buffer>(
    path,
    identity,
    identity,
    new grpc.Metadata(),
  );
}

/** Writes, waiting for `drain` when grpc-js's buffer is full. */
export function writeWithBackpressure(
  stream: grpc.ClientWritableStream<Buffer>,
  chunk: Buffer,
): Promise<void> | void {
  if (stream.write(chunk)) return;
  return new Promise((resolve) => stream.once("drain", () => resolve()));
}

/** Resolves with the call's final status (grpc-js always emits `status` once). */
export function statusOf(
  call: { once(e: "status", l: (s: grpc.StatusObject) => void): unknown },
): Promise<grpc.StatusObject> {
  return new Promise((resolve) => call.once("status", resolve));
}

const utf8 = new TextDecoder();

/**
 * Reads one length-delimited field (e.g. `Message.content`, field 3) straight
 * from the wire bytes, or `undefined` when absent.
 *
 * Decoding a whole message per delivery costs the load generator more than
 * the field it wants; this walks the tags and skips everything else.
 */
export function readStringField(
  bytes: Uint8Array,
  field: number,
): string | undefined {
  let pos = 0;
  const varint = () => {
    let v = 0, shift = 0, b;
    do {
      b = bytes[pos++];
      v += (b & 0x7f) * 2 ** shift;
      shift += 7;
    } while (b & 0x80);
    return v;
  };
  while (pos < bytes.length) {
    const tag = varint();
    const wire = tag & 7;
    if (wire === 0) varint();
    else if (wire === 1) pos += 8;
    else if (wire === 5) pos += 4;
    else if (wire === 2) {
      const len = varint();
      if (tag >>> 3 === field) {
        return utf8.decode(bytes.subarray(pos, pos + len));
      }
      pos += len;
    } else return undefined; // groups are not used by chat.proto
  }
  return undefined;
}
