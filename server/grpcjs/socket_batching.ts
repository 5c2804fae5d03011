/**
 * Turns on per-turn write batching (http2/batch_writes.ts) for every
 * connection a grpc-js server accepts through its own listener.
 *
 * grpc-js does not expose its listening `http2.Server`s; internals.ts hands
 * them out when grpc-js passed its start-up check, else nothing is patched
 * and the server only runs slower. (With the GOAWAY guard, the core owns its
 * listener and calls batchWrites() itself.)
 */
import type { Server } from "@grpc/grpc-js";
import type { EventEmitter } from "node:events";
import { http2ServersOf } from "./internals.ts";
import { batchWrites, type CorkableSocket } from "../../http2/batch_writes.ts";

export interface SocketBatchingOptions {
  /** Called with every socket that was patched (for tests and counters). */
  onSocket?: (socket: CorkableSocket) => void;
}

/**
 * Makes every connection accepted from now on batch its writes per turn.
 * Call after `bindAsync()`. Returns the number of listeners hooked; 0 means
 * the grpc-js internals were not as expected and nothing changed.
 */
export function enableSocketBatching(
  server: Server,
  options: SocketBatchingOptions = {},
): number {
  const onConnection = (socket: CorkableSocket) => {
    if (batchWrites(socket)) options.onSocket?.(socket);
  };
  let hooked = 0;
  for (const http2Server of http2ServersOf(server)) {
    const emitter = http2Server as Partial<EventEmitter> | null;
    if (typeof emitter?.prependListener !== "function") continue;
    emitter.prependListener("connection", onConnection);
    hooked++;
  }
  return hooked;
}
