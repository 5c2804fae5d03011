/**
 * Coalesces the HTTP/2 frames of one event-loop turn into one socket write.
 *
 * Deno's `node:http2` (2.9) pumps nghttp2's output with one `socket.write()`
 * per chunk, and each one is its own `write(2)` syscall plus a `WriteWrap`.
 * It also completes every stream write in a `setImmediate`, so the frames of
 * a fan-out leave in many small flushes spread over the check phase. Under
 * fan-out this was about half of all server CPU (see docs/perf-log.md).
 *
 * The fix is a per-socket auto-cork: the first write of a turn corks the
 * socket and schedules `uncork()` for the end of the turn (turn_end.ts, a
 * `setImmediate`), after the stream-write immediates already queued, so the
 * whole turn goes out through `_writev` as one syscall. Node's own http2
 * batches natively in the same way.
 * The frames, their order and the session's flow control are unchanged.
 *
 * Used with the `node:http2` fallbacks: the core's `--transport node` (its
 * accepted sockets; the grpc-js hook is server/grpcjs/socket_batching.ts)
 * and the edge's `--upstream-client node` (its upstream h2c socket). The
 * engine's own connections batch in frame_writer.ts instead.
 */
import { atTurnEnd } from "./turn_end.ts";

/** The parts of a `net.Socket` this module relies on. */
export interface CorkableSocket {
  write(...args: unknown[]): boolean;
  cork(): void;
  uncork(): void;
  _writev?: unknown;
}

const PATCHED = Symbol("chat.socketBatching");

/**
 * Patches one socket's `write()` to auto-cork for the rest of the turn.
 * Returns false (and changes nothing) when the socket cannot batch.
 */
export function batchWrites(socket: CorkableSocket): boolean {
  const target = socket as CorkableSocket & { [PATCHED]?: true };
  if (
    target[PATCHED] || typeof socket.write !== "function" ||
    typeof socket.cork !== "function" || typeof socket.uncork !== "function" ||
    typeof socket._writev !== "function"
  ) {
    return false;
  }
  target[PATCHED] = true;
  const write = socket.write;
  let corked = false;
  const uncork = () => {
    corked = false;
    socket.uncork();
  };
  socket.write = function (this: CorkableSocket, ...args: unknown[]) {
    if (!corked) {
      corked = true;
      socket.cork();
      atTurnEnd(uncork);
    }
    return write.apply(this, args);
  };
  return true;
}
