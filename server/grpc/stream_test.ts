import assert from "node:assert/strict";
import { EventEmitter } from "node:events";
import type { ServiceError } from "@grpc/grpc-js";
import { silentLogger } from "../log.ts";
import { ChatError } from "../rooms/errors.ts";
import { ChatStats } from "../rooms/stats.ts";
import { CallScopes } from "./call_scope.ts";
import type { HandlerContext } from "./context.ts";
import { openStream } from "./stream.ts";

/** What openStream() reads of a handler context. */
function context() {
  const stats = new ChatStats();
  const calls = new CallScopes();
  const ctx = { hub: { stats }, calls, log: silentLogger };
  return { stats, calls, ctx: ctx as unknown as HandlerContext };
}

/** A writable call that records how it ended. */
class Call extends EventEmitter {
  ended: string[] = [];
  constructor() {
    super();
    // As grpc-js's calls do: a status given as 'error' ends the call.
    this.on("error", (e: ServiceError) => this.ended.push(`status ${e.code}`));
  }
  end() {
    this.ended.push("end");
  }
}

Deno.test("openStream() runs cleanups once, last first, functions and Disposables alike", () => {
  const { stats, calls, ctx } = context();
  const call = new Call();
  const ran: string[] = [];
  const stream = openStream(call, ctx);
  assert.equal(stats.activeStreams, 1);
  assert.equal(calls.size, 1);
  stream.defer(() => ran.push("a"));
  stream.defer({ [Symbol.dispose]: () => ran.push("b") });
  stream.defer(() => ran.push("c"));
  stream.finish();
  stream.finish(new ChatError("internal", "again"));
  assert.deepEqual(ran, ["c", "b", "a"]);
  assert.deepEqual(call.ended, ["end"]);
  assert.equal(stats.activeStreams, 0);
  assert.equal(calls.size, 0);
});

Deno.test("openStream() without respond sends an error as the call's status; a cancel sends nothing", () => {
  const { ctx } = context();
  const failed = new Call();
  const ran: string[] = [];
  const one = openStream(failed, ctx);
  one.defer(() => ran.push("only"));
  one.finish(new ChatError("resource_exhausted", "client too slow"));
  assert.deepEqual(ran, ["only"]);
  assert.deepEqual(failed.ended, ["status 8"]);

  const cancelled = new Call();
  openStream(cancelled, ctx);
  cancelled.emit("cancelled");
  assert.deepEqual(cancelled.ended, []);
});

Deno.test("openStream() with respond hands it the status instead", () => {
  const { ctx } = context();
  const statuses: (number | null)[] = [];
  const stream = openStream(
    new EventEmitter(),
    ctx,
    (err) => statuses.push(err?.code ?? null),
  );
  stream.finish(new ChatError("invalid_argument", "bad"));
  assert.deepEqual(statuses, [3]);
});
