/**
 * Typed Chat (bidi) and UploadMessages (client streaming) over the WebSocket bridge.
 *
 * The page uses these two because they need a streaming request body, which
 * fetch cannot send from a browser; unary and server-streaming calls go through
 * connect-web instead (see `rpc.ts`).
 *
 * @module
 */
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import {
  type Message,
  MessageSchema,
  MessageType,
  type UploadResponse,
  UploadResponseSchema,
} from "../gen/chat_pb.ts";
import type { BridgeStatus } from "../protocol/ws_bridge.ts";
import { openWsCall } from "./ws_call.ts";

const CHAT_PATH = "/chat.ChatService/Chat";
const UPLOAD_PATH = "/chat.ChatService/UploadMessages";
/** Pause sending once this much is queued in the browser, so progress tracks the wire. */
const HIGH_WATER_BYTES = 64 * 1024;

/** A bidi chat session: `say` sends, `onMessage` receives, `end` half-closes. */
export interface BidiChat {
  say(content: string): void;
  end(): void;
  cancel(): void;
  status: Promise<BridgeStatus>;
}

/** Opens Chat; each received message (the server's echo, say) goes to `onMessage`. */
export function startBidiChat(
  url: string,
  who: { user: string; room: string },
  onMessage: (message: Message) => void,
): BidiChat {
  const call = openWsCall(url, { path: CHAT_PATH });
  (async () => {
    for await (const bytes of call.messages) {
      onMessage(fromBinary(MessageSchema, bytes));
    }
  })();
  return {
    say: (content) =>
      call.send(toBinary(
        MessageSchema,
        create(MessageSchema, { ...who, content, type: MessageType.CHAT }),
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
 */
export async function uploadLines(
  url: string,
  who: { user: string; room: string },
  lines: string[],
  onProgress: (sent: number, total: number) => void,
): Promise<UploadResult> {
  const call = openWsCall(url, { path: UPLOAD_PATH });
  let response: UploadResponse | undefined;
  const reading = (async () => {
    for await (const bytes of call.messages) {
      response = fromBinary(UploadResponseSchema, bytes);
    }
  })();
  for (let i = 0; i < lines.length; i++) {
    call.send(toBinary(
      MessageSchema,
      create(MessageSchema, {
        ...who,
        content: lines[i],
        type: MessageType.CHAT,
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
