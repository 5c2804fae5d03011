import assert from "node:assert/strict";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import {
  type Message,
  MessageSchema,
  MessageType,
  type SubscribeRequest,
} from "../gen/chat_pb.ts";
import { PageGate } from "./page_gate.ts";
import { startRoomSession } from "./room_session.ts";
import type { RoomView } from "./room_view.ts";
import type { ChatClient } from "./rpc.ts";

const welcome = (epoch: string, offset: bigint) =>
  create(MessageSchema, {
    type: MessageType.SYSTEM,
    content: "Welcome to room r, alice!",
    room: "r",
    epoch,
    offset,
  });
const chat = (epoch: string, offset: bigint, content: string) =>
  create(MessageSchema, { user: "bob", room: "r", epoch, offset, content });

/** Stays open (sending nothing more) until `signal` aborts. */
function held(signal: AbortSignal): Promise<never> {
  return new Promise((_, reject) => {
    if (signal.aborted) return reject(signal.reason);
    signal.addEventListener("abort", () => reject(signal.reason), {
      once: true,
    });
  });
}

const until = async (check: () => boolean, what: string) => {
  for (let i = 0; i < 1000 && !check(); i++) {
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  assert.ok(check(), `not reached in time: ${what}`);
};

Deno.test("room session: a page hidden while it fetched a new epoch's history says how the resume went when shown again", async () => {
  const gate = new PageGate();
  const life = new AbortController();
  const asked: Pick<SubscribeRequest, "epoch" | "sinceOffset">[] = [];
  const notes: string[] = [];
  const shown: string[] = [];
  // What each subscription sends, in turn.
  const scripts: ((signal: AbortSignal) => AsyncGenerator<Message>)[] = [
    async function* () {
      yield welcome("e1", 1n);
      yield chat("e1", 1n, "epoch 1");
      throw new ConnectError("server is shutting down", Code.Unavailable);
    },
    // The resume lands in a new epoch: the page fetches its history.
    async function* () {
      yield welcome("e2", 1n);
    },
    // That fetch is held (sends nothing); the page is hidden meanwhile.
    async function* (signal) {
      yield await held(signal);
    },
    // Shown again: the resume replays the new epoch's history and what
    // came while the page was away.
    async function* (signal) {
      yield welcome("e2", 2n);
      yield chat("e2", 1n, "epoch 2");
      yield chat("e2", 2n, "said while away");
      await held(signal);
    },
  ];
  const client = {
    subscribeMessages(req: SubscribeRequest, opts: { signal: AbortSignal }) {
      asked.push({ epoch: req.epoch, sinceOffset: req.sinceOffset });
      return scripts[asked.length - 1](opts.signal);
    },
  } as unknown as ChatClient;
  const view = {
    add: (m: Message) => shown.push(m.content),
    note: (text: string) => notes.push(text),
  } as unknown as RoomView;
  const done = startRoomSession({
    client,
    view,
    user: "alice",
    room: "r",
    signal: life.signal,
    gate,
    status: () => {},
    onResume: () => {},
  });
  await until(() => asked.length === 3, "the new epoch's history fetched");
  gate.close();
  await new Promise((resolve) => setTimeout(resolve, 20));
  gate.reopen();
  await until(() => shown.includes("said while away"), "the resume");
  assert.deepEqual(asked, [
    { epoch: "", sinceOffset: 0n },
    { epoch: "e1", sinceOffset: 1n },
    { epoch: "e2", sinceOffset: 0n },
    { epoch: "e2", sinceOffset: 0n },
  ]);
  assert.deepEqual(shown, [
    "Welcome to room r, alice!",
    "epoch 1",
    "epoch 2",
    "said while away",
  ]);
  assert.equal(notes.at(-1), "Reconnected: 2 missed message(s) follow.");
  life.abort();
  await done;
});
