import assert from "node:assert/strict";
import { create } from "@bufbuild/protobuf";
import { MessageSchema, MessageType } from "../gen/chat_pb.ts";
import { formatMessage, formatNote } from "./format.ts";

const msg = (user: string, content: string, type = MessageType.CHAT) =>
  create(MessageSchema, { user, content, room: "r", type });

Deno.test("formatMessage() colours each user the same way every time, and system lines apart", () => {
  const a = formatMessage(msg("ann", "hi"), true);
  assert.equal(a, formatMessage(msg("ann", "hi"), true));
  // deno-lint-ignore no-control-regex
  assert.match(a, /^\x1b\[2m\[r\] \x1b\[0m\x1b\[\d+mann\x1b\[0m: hi$/);
  assert.equal(
    formatMessage(msg("System", "Welcome", MessageType.SYSTEM), true),
    "\x1b[2;35m[r] *System: Welcome\x1b[0m",
  );
  assert.equal(formatMessage(msg("ann", "hi")), "[r] ann: hi");
  assert.equal(formatNote("-- left", true), "\x1b[33m-- left\x1b[0m");
  assert.equal(formatNote("-- left"), "-- left");
});

Deno.test("formatMessage() escapes control characters other users send", () => {
  assert.equal(
    formatMessage(msg("m\x1b[31m", "a\nb\x07")),
    "[r] m\\x1b[31m: a\\x0ab\\x07",
  );
});
