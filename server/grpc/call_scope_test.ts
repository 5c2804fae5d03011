import assert from "node:assert/strict";
import { EventEmitter } from "node:events";
import { ChatError } from "../rooms/errors.ts";
import { CallScopes } from "./call_scope.ts";

/** A scope owner that records each end's code. */
function owner() {
  const ends: string[] = [];
  return { ends, finish: (reason: ChatError) => ends.push(reason.code) };
}

Deno.test("CallScopes.enter() ends once on 'cancelled' and forgets the scope", () => {
  const scopes = new CallScopes();
  const call = new EventEmitter();
  const o = owner();
  scopes.enter(call, o);
  assert.equal(scopes.size, 1);
  call.emit("cancelled");
  call.emit("cancelled");
  assert.deepEqual(o.ends, ["cancelled"]);
  assert.equal(scopes.size, 0);
  assert.equal(call.listenerCount("cancelled"), 0);
});

Deno.test("CallScopes.abortAll() ends every open scope with its reason; closed scopes stay quiet", () => {
  const scopes = new CallScopes();
  const calls = [new EventEmitter(), new EventEmitter(), new EventEmitter()];
  const owners = calls.map(() => owner());
  const opened = calls.map((c, i) => scopes.enter(c, owners[i]));
  opened[1].close();
  opened[1].close();
  scopes.abortAll(new ChatError("unavailable", "server is shutting down"));
  assert.deepEqual(owners.map((o) => o.ends), [
    ["unavailable"],
    [],
    ["unavailable"],
  ]);
  assert.equal(scopes.size, 0);
  // A 'cancelled' after the end (grpc-js sends one after every status) is a no-op.
  calls[0].emit("cancelled");
  assert.deepEqual(owners[0].ends, ["unavailable"]);
});

Deno.test("CallScopes.enter() with endOnError ends on the call's 'error' and keeps absorbing later ones", () => {
  const scopes = new CallScopes();
  const call = new EventEmitter();
  const o = owner();
  scopes.enter(call, o, true);
  call.emit("error", new Error("write failed"));
  assert.deepEqual(o.ends, ["cancelled"]);
  // The status a handler emits as 'error' after its end finds a listener.
  call.emit("error", new Error("status"));
  assert.deepEqual(o.ends, ["cancelled"]);
});

Deno.test("CallScopes.enter() without endOnError leaves 'error' to the call's own listeners", () => {
  const scopes = new CallScopes();
  const call = new EventEmitter();
  const o = owner();
  scopes.enter(call, o);
  assert.equal(call.listenerCount("error"), 0);
  assert.equal(scopes.size, 1);
});
