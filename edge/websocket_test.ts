import assert from "node:assert/strict";
import { createWebSocketBridge } from "./websocket.ts";

Deno.test("createWebSocketBridge() refuses timeouts a timer cannot take (2^31 ms and up)", () => {
  const upstream = { call: () => Promise.reject(new Error("unused")) };
  for (const key of ["maxTimeoutMs", "headerTimeoutMs"] as const) {
    assert.throws(
      () =>
        createWebSocketBridge(upstream as never, {
          maxMessageBytes: 1024,
          [key]: 2 ** 31,
        }),
      new RegExp(`${key} must be at most 2147483647`),
    );
  }
});
