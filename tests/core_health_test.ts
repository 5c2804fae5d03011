/**
 * grpc.health.v1 on the core (server/ops/health.ts), called by grpc-js
 * through grpc-health-check's own service definition: Check and Watch,
 * NOT_SERVING while a health source is down and from the start of shutdown,
 * and Watch streams ended with UNAVAILABLE at shutdown without holding it
 * up. Runs on both transports (tests/core_transports_test.ts).
 */
import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import { HealthImplementation } from "grpc-health-check";
import { HEALTH_SERVICES, type HealthSource } from "../server/ops/health.ts";
import {
  eventually,
  rejection,
  startCore,
  streamError,
  take,
} from "./support/core.ts";
import { check, healthClient, type Status } from "./support/health.ts";

/**
 * A health source whose state the test sets: the one fake here, standing in
 * for the store that reports into this interface (its own branch).
 */
function switchableSource(
  name: string,
): HealthSource & { set(up: boolean): void } {
  let up = true;
  const listeners = new Set<() => void>();
  return {
    name,
    serving: () => up,
    watch(onChange) {
      listeners.add(onChange);
      return () => listeners.delete(onChange);
    },
    set(next) {
      up = next;
      for (const l of listeners) l();
    },
  };
}

Deno.test("Health/Check answers SERVING for the server and chat.ChatService, NOT_FOUND for others", async () => {
  await using f = await startCore();
  const client = healthClient(f.addr);
  try {
    assert.equal(await check(client, ""), "SERVING");
    assert.equal(await check(client, "chat.ChatService"), "SERVING");
    const err = await rejection(check(client, "no.such.Service"));
    assert.equal(err.code, grpc.status.NOT_FOUND);
    assert.equal(f.core.health(), "SERVING");
  } finally {
    client.close();
  }
});

Deno.test("Health follows its sources: NOT_SERVING while the store is down, SERVING again after", async () => {
  const store = switchableSource("store");
  await using f = await startCore({ healthSources: [store] });
  const client = healthClient(f.addr);
  try {
    const watch = client.watch({ service: "" });
    assert.deepEqual((await take(watch, 1)).map((r) => r.status), ["SERVING"]);
    store.set(false);
    assert.deepEqual((await take(watch, 1)).map((r) => r.status), [
      "NOT_SERVING",
    ]);
    assert.equal(await check(client, "chat.ChatService"), "NOT_SERVING");
    assert.equal(f.core.health(), "NOT_SERVING");
    store.set(true);
    assert.deepEqual((await take(watch, 1)).map((r) => r.status), ["SERVING"]);
    assert.equal(await check(client, ""), "SERVING");
    watch.cancel();
  } finally {
    client.close();
  }
});

Deno.test("a source down at start-up makes the core start NOT_SERVING", async () => {
  const store = switchableSource("store");
  store.set(false);
  await using f = await startCore({ healthSources: [store] });
  const client = healthClient(f.addr);
  try {
    assert.equal(await check(client, ""), "NOT_SERVING");
  } finally {
    client.close();
  }
});

Deno.test("shutdown: Watch gets NOT_SERVING, then UNAVAILABLE, and does not hold shutdown for the grace", async () => {
  const f = await startCore();
  const client = healthClient(f.addr);
  try {
    const watch = client.watch({ service: "chat.ChatService" });
    assert.deepEqual((await take(watch, 1)).map((r) => r.status), ["SERVING"]);
    const statuses: string[] = [];
    watch.on("data", (r: Status) => statuses.push(r.status));
    const ended = streamError(watch);
    watch.resume(); // take() left it paused
    const t0 = performance.now();
    const stopped = f.core.shutdown(10_000);
    assert.equal(f.core.health(), "NOT_SERVING");
    const err = await ended;
    assert.equal(err.code, grpc.status.UNAVAILABLE);
    assert.equal(err.details, "server is shutting down");
    assert.deepEqual(statuses, ["NOT_SERVING"]);
    client.close();
    await stopped;
    const took = performance.now() - t0;
    assert.ok(took < 5000, `shutdown took ${took} ms with a Watch open`);
  } finally {
    client.close();
    await f[Symbol.asyncDispose]();
  }
});

Deno.test("shutdown: a Check after it started is not answered SERVING", async () => {
  const f = await startCore();
  const client = healthClient(f.addr);
  try {
    assert.equal(await check(client, ""), "SERVING");
    const stopped = f.core.shutdown(2000);
    const outcome = await check(client, "").catch((err) =>
      `error ${(err as grpc.ServiceError).code}`
    );
    // A new call is either refused (UNAVAILABLE) or told NOT_SERVING.
    assert.ok(
      outcome === "NOT_SERVING" ||
        outcome === `error ${grpc.status.UNAVAILABLE}`,
      outcome,
    );
    client.close();
    await stopped;
  } finally {
    client.close();
    await f[Symbol.asyncDispose]();
  }
});

/** grpc-health-check's per-name sets of watchers (a private field). */
type Watchers = Map<string, Set<unknown>>;

Deno.test("Health/Watch of names the core does not serve: SERVICE_UNKNOWN, stays open, and keeps nothing per name", async () => {
  // The HealthImplementation behind the core, caught as it registers the
  // first Watch: its map of names to watchers is what grew.
  const proto = HealthImplementation.prototype as unknown as {
    addWatcher(this: { watchers: Watchers }, ...args: unknown[]): void;
  };
  const addWatcher = proto.addWatcher;
  let watchers: Watchers | undefined;
  proto.addWatcher = function (...args) {
    watchers = this.watchers;
    return addWatcher.apply(this, args);
  };
  try {
    await using f = await startCore();
    const client = healthClient(f.addr);
    try {
      const served = client.watch({ service: "" });
      assert.deepEqual((await take(served, 1)).map((r) => r.status), [
        "SERVING",
      ]);
      for (let i = 0; i < 50; i++) {
        const watch = client.watch({ service: `no.Such${i}` });
        assert.deepEqual((await take(watch, 1)).map((r) => r.status), [
          "SERVICE_UNKNOWN",
        ]);
        watch.cancel();
      }
      // Open until the client goes: a Watch of an unknown name, now.
      const open = client.watch({ service: "no.Such" });
      assert.deepEqual((await take(open, 1)).map((r) => r.status), [
        "SERVICE_UNKNOWN",
      ]);
      assert.equal(f.core.snapshot().openCalls, 2);
      open.cancel();
      served.cancel();
      await eventually(
        () => f.core.snapshot().openCalls === 0,
        "the Watch calls to end",
      );
      assert.ok(watchers, "the core's Watch registered with the package");
      assert.deepEqual(
        [...watchers.keys()].filter((name) => !HEALTH_SERVICES.includes(name)),
        [],
      );
    } finally {
      client.close();
    }
  } finally {
    proto.addWatcher = addWatcher;
  }
});
