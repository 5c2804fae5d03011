/**
 * One gRPC call over one WebSocket to the edge's `/ws` bridge (browser side).
 *
 * Browsers cannot send a streaming request body with fetch, so client-streaming
 * and bidi calls ride a WebSocket instead; this is the untyped layer (bytes in,
 * bytes out) that `bridge_client.ts` wraps with the generated message types.
 * Frames sent before the socket opens are queued, because `WebSocket.send()`
 * throws while the socket is still connecting.
 *
 * @module
 */
import {
  type BridgeCallHeader,
  type BridgeStatus,
  decodeFrame,
  decodeStatus,
  encodeFrame,
  FLAG_DATA,
  FLAG_END,
} from "../protocol/ws_bridge.ts";
import { Code } from "../protocol/status.ts";

/** A running call: write with `send`, end with `closeSend`, read `messages`. */
export interface WsCall {
  send(message: Uint8Array): void;
  /** Half-close: no more requests; responses keep coming. */
  closeSend(): void;
  /** Ends the call now; the bridge cancels the upstream call. */
  cancel(): void;
  /** Bytes accepted by `send` that the browser has not put on the wire yet. */
  bufferedAmount(): number;
  messages: AsyncIterable<Uint8Array>;
  /** Resolves once, at the end; never rejects. */
  status: Promise<BridgeStatus>;
}

/** Opens a call; `url` is the bridge's ws:// or wss:// address. */
export function openWsCall(url: string, header: BridgeCallHeader): WsCall {
  const socket = new WebSocket(url);
  socket.binaryType = "arraybuffer";
  const pending: (string | Uint8Array)[] = [JSON.stringify(header)];
  let pendingBytes = 0;
  const inbox: Uint8Array[] = [];
  let wake: (() => void) | undefined;
  let finished: BridgeStatus | undefined;
  let settle!: (status: BridgeStatus) => void;
  const status = new Promise<BridgeStatus>((resolve) => settle = resolve);

  const finish = (s: BridgeStatus) => {
    if (finished) return;
    finished = s;
    pending.length = 0;
    pendingBytes = 0;
    settle(s);
    wake?.();
  };
  const transmit = (data: string | Uint8Array) => {
    if (finished) return;
    if (socket.readyState === WebSocket.OPEN) socket.send(data as BufferSource);
    else {
      pending.push(data);
      pendingBytes += data.length;
    }
  };

  let opened = false;
  socket.onopen = () => {
    opened = true;
    for (const data of pending.splice(0)) socket.send(data as BufferSource);
    pendingBytes = 0;
  };
  socket.onmessage = (event) => {
    if (!(event.data instanceof ArrayBuffer)) return;
    try {
      const frame = decodeFrame(new Uint8Array(event.data));
      if (frame.flag === FLAG_END) finish(decodeStatus(frame.payload));
      else if (!finished) inbox.push(frame.payload);
    } catch (err) {
      finish({
        code: Code.INTERNAL,
        message: `bad frame from bridge: ${err}`,
        trailers: {},
      });
      socket.close();
    }
    wake?.();
  };
  socket.onclose = (event) => {
    finish({
      code: Code.UNAVAILABLE,
      // A browser shows no refused upgrade's status (the edge's 429 or 403):
      // name what refuses one, as the page can say nothing more precise.
      message: opened
        ? `bridge closed the socket before a status (close code ${event.code})`
        : `could not open the WebSocket to the edge (refused: too many ` +
          `sockets from this address, an origin not allowed, or the edge ` +
          `unreachable; close code ${event.code})`,
      trailers: {},
    });
  };

  async function* read(): AsyncGenerator<Uint8Array> {
    while (true) {
      if (inbox.length > 0) {
        yield inbox.shift()!;
        continue;
      }
      if (finished) return;
      await new Promise<void>((resolve) => wake = resolve);
      wake = undefined;
    }
  }

  return {
    send: (message) => transmit(encodeFrame(FLAG_DATA, message)),
    closeSend: () => transmit(encodeFrame(FLAG_END, new Uint8Array(0))),
    cancel: () => {
      finish({
        code: Code.CANCELLED,
        message: "cancelled by the client",
        trailers: {},
      });
      socket.close(1000, "cancelled");
    },
    // Once the call ended nothing more goes on the wire: a closed socket's
    // bufferedAmount never drains (browsers keep what it could not send).
    bufferedAmount: () => finished ? 0 : socket.bufferedAmount + pendingBytes,
    messages: read(),
    status,
  };
}

/** The bridge's address on the page's own origin. */
export function bridgeUrl(
  location: { protocol: string; host: string },
): string {
  return `${
    location.protocol === "https:" ? "wss:" : "ws:"
  }//${location.host}/ws`;
}
