/**
 * The core over TLS: h2 with ALPN on both transports, a certificate the
 * test makes with openssl, a grpc-js client that trusts it.
 */
import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import { Buffer } from "node:buffer";
import type { SendMessageResponse } from "../gen/chat_pb.ts";
import { chatServiceDefinition } from "../rpc/chat_service.ts";
import { startTlsCore } from "./support/auth.ts";

const send = chatServiceDefinition.SendMessage;

function sendMessage(
  client: grpc.Client,
): Promise<SendMessageResponse> {
  return new Promise((resolve, reject) => {
    client.makeUnaryRequest(
      send.path,
      send.requestSerialize,
      send.responseDeserialize,
      { user: "alice", room: "lobby", content: "over TLS" },
      new grpc.Metadata(),
      { deadline: new Date(Date.now() + 5000) },
      (err, res) => err ? reject(err) : resolve(res as SendMessageResponse),
    );
  });
}

Deno.test("TLS: the core serves gRPC over TLS (ALPN h2) with its certificate, and not h2c", async () => {
  const { core, cert, close } = await startTlsCore();
  const tls = new grpc.Client(
    `localhost:${core.port}`,
    grpc.credentials.createSsl(Buffer.from(cert)),
  );
  const plain = new grpc.Client(
    `127.0.0.1:${core.port}`,
    grpc.credentials.createInsecure(),
  );
  try {
    const res = await sendMessage(tls);
    assert.match(res.messageId, /^msg_\d+$/);
    const err = await sendMessage(plain).then(
      () => assert.fail("h2c must not be served"),
      (e: grpc.ServiceError) => e,
    );
    assert.equal(err.code, grpc.status.UNAVAILABLE);
  } finally {
    tls.close();
    plain.close();
    await close();
  }
});
