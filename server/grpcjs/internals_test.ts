import assert from "node:assert/strict";
import { Server } from "@grpc/grpc-js";
import { EventEmitter } from "node:events";
import {
  baseCallOf,
  GRPC_JS_VERSION,
  grpcJsLayoutProblem,
  http2ServersOf,
} from "./internals.ts";

Deno.test("grpcJsLayoutProblem is undefined for the grpc-js that deno.json pins, the one named in GRPC_JS_VERSION", async () => {
  const config = JSON.parse(
    await Deno.readTextFile(new URL("../../deno.json", import.meta.url)),
  );
  assert.equal(
    config.imports["@grpc/grpc-js"],
    `npm:@grpc/grpc-js@${GRPC_JS_VERSION}`,
    "review server/grpcjs/ and update GRPC_JS_VERSION with the upgrade",
  );
  assert.equal(grpcJsLayoutProblem, undefined);
});

Deno.test("http2ServersOf() and baseCallOf() give nothing for objects without grpc-js's layout", () => {
  assert.deepEqual(http2ServersOf({} as Server), []);
  assert.equal(baseCallOf(new EventEmitter()), undefined);
  const server = new Server({ "grpc.enable_channelz": 0 });
  try {
    assert.deepEqual(http2ServersOf(server), [], "nothing bound yet");
  } finally {
    server.forceShutdown();
  }
});
