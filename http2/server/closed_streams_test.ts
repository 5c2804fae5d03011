import assert from "node:assert/strict";
import { ErrorCode, H2ConnectionError } from "../../protocol/http2/frames.ts";
import { Closed, CLOSED_MEMORY, ClosedStreams } from "./closed_streams.ts";

const codeOf = (fn: () => unknown) => {
  try {
    fn();
  } catch (e) {
    return (e as H2ConnectionError).code;
  }
  return undefined;
};

Deno.test("ClosedStreams.frameAfterClose() answers by how the stream closed (RFC 9113 §5.1)", () => {
  const closed = new ClosedStreams();
  closed.remember(1, Closed.ENDED_BY_PEER);
  closed.remember(3, Closed.RESET_BY_PEER);
  closed.remember(5, Closed.RESET_BY_US);
  assert.equal(
    codeOf(() => closed.frameAfterClose(1, "DATA")),
    ErrorCode.STREAM_CLOSED,
  );
  assert.equal(closed.frameAfterClose(3, "DATA"), true, "a stream error");
  assert.equal(closed.frameAfterClose(5, "DATA"), false, "ignored");
  // 7 was never opened although 9 was: the peer skipped it (§5.1.1).
  closed.remember(9, Closed.RESET_BY_US);
  assert.equal(
    codeOf(() => closed.frameAfterClose(7, "HEADERS")),
    ErrorCode.PROTOCOL_ERROR,
  );
});

Deno.test("ClosedStreams remembers the last CLOSED_MEMORY streams; older ones get a stream error", () => {
  const closed = new ClosedStreams();
  for (let i = 0; i <= CLOSED_MEMORY; i++) {
    closed.remember(2 * i + 1, Closed.ENDED_BY_PEER);
  }
  assert.equal(closed.frameAfterClose(1, "DATA"), true, "forgotten");
  assert.equal(
    codeOf(() => closed.frameAfterClose(3, "DATA")),
    ErrorCode.STREAM_CLOSED,
  );
});

Deno.test("ClosedStreams: the latest answer for an id remembered twice wins, and the ring forgets in order of closing", () => {
  const closed = new ClosedStreams();
  // Released first (ended by us), then the peer's reset arrives.
  closed.remember(1, Closed.RESET_BY_US);
  closed.remember(1, Closed.RESET_BY_PEER);
  assert.equal(closed.frameAfterClose(1, "DATA"), true, "a stream error");
  // Streams close out of order: 5 before 3. After CLOSED_MEMORY more, both
  // are forgotten, and the highest forgotten id bounds "skipped".
  closed.remember(5, Closed.ENDED_BY_PEER);
  closed.remember(3, Closed.ENDED_BY_PEER);
  for (let i = 0; i < CLOSED_MEMORY - 1; i++) {
    closed.remember(101 + 2 * i, Closed.ENDED_BY_PEER);
  }
  // 5 is gone (the oldest after the two entries of 1); 3 is still there.
  assert.equal(closed.frameAfterClose(5, "DATA"), true, "forgotten");
  assert.equal(
    codeOf(() => closed.frameAfterClose(3, "DATA")),
    ErrorCode.STREAM_CLOSED,
  );
  closed.remember(1001, Closed.ENDED_BY_PEER);
  assert.equal(closed.frameAfterClose(3, "DATA"), true, "forgotten");
  // 7 and 99 were never closed and are above every forgotten id (5):
  // the peer skipped them.
  for (const id of [7, 99]) {
    assert.equal(
      codeOf(() => closed.frameAfterClose(id, "HEADERS")),
      ErrorCode.PROTOCOL_ERROR,
    );
  }
});
