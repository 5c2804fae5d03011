import assert from "node:assert/strict";
import { EventEmitter } from "node:events";
import { status } from "@grpc/grpc-js";
import type { Message } from "../gen/chat_pb.ts";
import type { Line } from "./outbox.ts";
import { bidiSender } from "./bidi_sender.ts";
import type { ChatClient } from "./rpc.ts";

/**
 * A Chat call that records what is written and, cancelled, ends CANCELLED
 * on a later tick (grpc-js reports a status from process.nextTick).
 */
class FakeCall extends EventEmitter {
  written: { id: string; content: string; idempotencyKey: string }[] = [];
  write(m: { id: string; content: string; idempotencyKey: string }): boolean {
    this.written.push(m);
    return true;
  }
  echo(id: string): void {
    this.emit("data", { id: `echo_${id}` } as Message);
  }
  cancel(): void {
    setTimeout(() => {
      this.emit("error", { code: status.CANCELLED, details: "cancelled" });
      this.emit("status", { code: status.CANCELLED, details: "cancelled" });
    }, 0);
  }
  end(): void {}
}

function sender() {
  const calls: FakeCall[] = [];
  const client = {
    chat() {
      const call = new FakeCall();
      calls.push(call);
      return call;
    },
  } as unknown as ChatClient;
  const lost: Line[][] = [];
  const bidi = bidiSender(client, { user: "ann", room: "r" }, {
    show: () => {},
    lost: (lines) => lost.push(lines),
  });
  return { bidi, calls, lost };
}

Deno.test("bidiSender: a stream that breaks hands back the lines it did not echo, with their keys", () => {
  const { bidi, calls, lost } = sender();
  const a = bidi.write("a", "ka");
  bidi.write("b", "kb");
  assert.equal(a, "ann-ka");
  calls[0].echo(a);
  calls[0].emit("error", { code: status.UNAVAILABLE, details: "down" });
  assert.deepEqual(lost, [[{ content: "b", key: "kb" }]]);
  assert.equal(bidi.unconfirmed(), 0);
});

Deno.test("bidiSender: reopen() hands back the lines the stream it ends did not echo, with their keys (else they were never sent again)", async () => {
  const { bidi, calls, lost } = sender();
  const a = bidi.write("a", "ka");
  bidi.write("b", "kb");
  bidi.write("c", "kc");
  calls[0].echo(a);
  bidi.reopen();
  await new Promise((r) => setTimeout(r, 10)); // the cancelled call's status
  assert.deepEqual(lost, [[
    { content: "b", key: "kb" },
    { content: "c", key: "kc" },
  ]]);
  assert.equal(bidi.unconfirmed(), 0);
  // Sent again, they go on a new stream with the same ids and keys.
  assert.equal(bidi.write("b", "kb"), "ann-kb");
  assert.equal(calls.length, 2);
  assert.deepEqual(
    calls[1].written.map((m) => [m.id, m.idempotencyKey]),
    [["ann-kb", "kb"]],
  );
  calls[1].echo("ann-kb");
  assert.equal(bidi.unconfirmed(), 0);
});

Deno.test("bidiSender: reopen() with every line echoed, or no stream, hands nothing back", async () => {
  const { bidi, calls, lost } = sender();
  bidi.reopen();
  const a = bidi.write("a", "ka");
  calls[0].echo(a);
  bidi.reopen();
  await new Promise((r) => setTimeout(r, 10));
  assert.deepEqual(lost, []);
});
