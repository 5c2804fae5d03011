/**
 * Typed Chat (bidi) and UploadMessages (client streaming) over the WebSocket bridge.
 *
 * The page uses these two because they need a streaming request body, which
 * fetch cannot send from a browser; unary and server-streaming calls go through
 * connect-web instead (see `rpc.ts`). Each message carries the page's time:
 * the core stores these as sent (only SendMessage is stamped by the server),
 * and a message without one would show the time of every later replay.
 *
 * @module
 */
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { timestampNow } from "@bufbuild/protobuf/wkt";
import {
  type Message,
  MessageSchema,
  MessageType,
  type UploadResponse,
  UploadResponseSchema,
} from "../gen/chat_pb.ts";
import type { BridgeStatus } from "../protocol/ws_bridge.ts";
import { openWsCall } from "./ws_call.ts";
import { authMetadata } from "./auth.ts";

const CHAT_PATH = "/chat.ChatService/Chat";
const UPLOAD_PATH = "/chat.ChatService/UploadMessages";
/** Pause sending once this much is queued in the browser, so progress tracks the wire. */
const HIGH_WATER_BYTES = 64 * 1024;

/** A bidi chat session: `say` sends, `onMessage` receives, `end` half-closes. */
export interface BidiChat {
  /**
   * Sends one line; with an `id`, its echo comes as `echo_<id>`; with an
   * idempotency `key`, sent again (after a break) it is stored once.
   */
  say(content: string, id?: string, key?: string): void;
  end(): void;
  cancel(): void;
  status: Promise<BridgeStatus>;
}

/** Opens Chat; each received message (the server's echo, say) goes to `onMessage`. */
export function startBidiChat(
  url: string,
  who: { user: string; room: string },
  onMessage: (message: Message) => void,
  token = "",
): BidiChat {
  const call = openWsCall(url, {
    path: CHAT_PATH,
    metadata: authMetadata(token),
  });
  (async () => {
    for await (const bytes of call.messages) {
      onMessage(fromBinary(MessageSchema, bytes));
    }
  })();
  return {
    say: (content, id = "", key = "") =>
      call.send(toBinary(
        MessageSchema,
        create(MessageSchema, {
          id,
          ...who,
          content,
          type: MessageType.CHAT,
          timestamp: timestampNow(),
          idempotencyKey: key,
        }),
      )),
    end: () => call.closeSend(),
    cancel: () => call.cancel(),
    status: call.status,
  };
}

/** The end of an upload: the server's reply (if any) and the call's status. */
export interface UploadResult {
  response?: UploadResponse;
  status: BridgeStatus;
}

/**
 * Streams each line as one Message in a single UploadMessages call.
 *
 * `onProgress(sent, total)` fires as batches leave the browser's send buffer.
 * The `token`, if any, rides in the header frame's metadata (browsers cannot
 * set headers on a WebSocket). With a `batchKey`, line `i` carries the
 * idempotency key `<batchKey>-<i>`: the same lines uploaded again with the
 * same batch key (after a failed upload) are counted, not stored twice.
 */
export async function uploadLines(
  url: string,
  who: { user: string; room: string },
  lines: string[],
  onProgress: (sent: number, total: number) => void,
  token = "",
  batchKey = "",
): Promise<UploadResult> {
  const call = openWsCall(url, {
    path: UPLOAD_PATH,
    metadata: authMetadata(token),
  });
  let response: UploadResponse | undefined;
  const reading = (async () => {
    for await (const bytes of call.messages) {
      response = fromBinary(UploadResponseSchema, bytes);
    }
  })();
  // The socket may close under the upload (the edge went away, the page went
  // into the back/forward cache): the rest is not sent, the status says why.
  let ended = false;
  call.status.then(() => ended = true);
  for (let i = 0; i < lines.length && !ended; i++) {
    call.send(toBinary(
      MessageSchema,
      create(MessageSchema, {
        ...who,
        content: lines[i],
        type: MessageType.CHAT,
        timestamp: timestampNow(),
        idempotencyKey: batchKey === "" ? "" : `${batchKey}-${i}`,
      }),
    ));
    if (i % 50 === 49 || i === lines.length - 1) {
      while (call.bufferedAmount() > HIGH_WATER_BYTES) {
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      onProgress(i + 1, lines.length);
    }
  }
  call.closeSend();
  const status = await call.status;
  await reading;
  return { response, status };
}
