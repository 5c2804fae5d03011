/**
 * Turns on per-turn write batching (sockets/batch_writes.ts) for every
 * connection a grpc-js server accepts through its own listener.
 *
 * grpc-js does not expose its listening `http2.Server`s, so this reads its
 * private `http2Servers` map. Everything is feature-checked: with another
 * grpc-js layout nothing is patched and the server only runs slower. (With
 * the GOAWAY guard, the core owns its listener and calls batchWrites()
 * itself.)
 */
import type { Server } from "@grpc/grpc-js";
import type { EventEmitter } from "node:events";
import {
  batchWrites,
  type CorkableSocket,
} from "../../sockets/batch_writes.ts";

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
  const servers = (server as unknown as { http2Servers?: unknown })
    .http2Servers;
  if (!(servers instanceof Map)) return 0;
  const onConnection = (socket: CorkableSocket) => {
    if (batchWrites(socket)) options.onSocket?.(socket);
  };
  let hooked = 0;
  for (const http2Server of servers.keys()) {
    const emitter = http2Server as Partial<EventEmitter> | null;
    if (typeof emitter?.prependListener !== "function") continue;
    emitter.prependListener("connection", onConnection);
    hooked++;
  }
  return hooked;
}
