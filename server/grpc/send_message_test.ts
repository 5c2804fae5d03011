import assert from "node:assert/strict";
import { Access } from "../auth/access.ts";
import { DEFAULT_CORE_CONFIG } from "../config.ts";
import type {
  IdempotencyIndex,
  PostAnswer,
  Publish,
} from "../rooms/idempotency.ts";
import type { HandlerContext } from "./context.ts";
import { postMessage } from "./send_message.ts";

Deno.test("postMessage: a keyed post's result kept by the idempotency index holds its id, time and offset, not the message's bytes", () => {
  const kept: unknown[] = [];
  const idempotency = {
    post(
      _room: string,
      _user: string,
      _key: string,
      publish: Publish,
      answer: PostAnswer,
    ) {
      publish((err, result) => {
        kept.push(result);
        answer(err, result);
      }, "3:annk");
    },
  } as unknown as IdempotencyIndex;
  const ctx = {
    hub: {
      stats: { callsStarted: 0 },
      nextMessageId: () => "msg_1",
      publish: (
        _room: string,
        _body: Uint8Array,
        done: (err: unknown, stored?: { offset: number }) => void,
      ) => done(undefined, { offset: 7 }),
      store: {},
    },
    config: DEFAULT_CORE_CONFIG,
    access: new Access(),
    idempotency,
  } as unknown as HandlerContext;
  let answered = 0;
  postMessage(
    ctx,
    { user: "ann", room: "r", content: "x".repeat(1000), idempotencyKey: "k" },
    { key: "" },
    { reply: (err) => assert.fail(`${err}`), replyFramed: () => answered++ },
  );
  assert.equal(answered, 1);
  assert.equal(kept.length, 1);
  assert.deepEqual(Object.keys(kept[0]!).sort(), ["id", "offset", "timeMs"]);
});
