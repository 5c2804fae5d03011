import assert from "node:assert/strict";
import {
  decodeGrpcMessage,
  encodeGrpcMessage,
  formatGrpcTimeout,
  MAX_TIMER_MS,
  parseGrpcTimeout,
  practicalTimeout,
} from "./mod.ts";

Deno.test("parseGrpcTimeout() converts every unit to ms", () => {
  assert.equal(parseGrpcTimeout("2H"), 7_200_000);
  assert.equal(parseGrpcTimeout("3M"), 180_000);
  assert.equal(parseGrpcTimeout("1S"), 1000);
  assert.equal(parseGrpcTimeout("250m"), 250);
  assert.equal(parseGrpcTimeout("1500u"), 2);
  assert.equal(parseGrpcTimeout("1n"), 1);
});

Deno.test("parseGrpcTimeout() rejects malformed values", () => {
  for (const bad of ["", "1", "S", "123456789m", "1.5S", "-1S", "1s", "1 S"]) {
    assert.equal(parseGrpcTimeout(bad), undefined, bad);
  }
  assert.equal(parseGrpcTimeout(null), undefined);
});

Deno.test("formatGrpcTimeout() keeps at most 8 digits and round-trips", () => {
  for (const ms of [0, 1, 99_999_999, 100_000_000, 5e12, 1e15]) {
    const v = formatGrpcTimeout(ms);
    assert.match(v, /^\d{1,8}[HMSm]$/, v);
    assert.ok(parseGrpcTimeout(v)! >= Math.min(ms, 99_999_999 * 3_600_000));
  }
});

Deno.test("encodeGrpcMessage() escapes '%', controls and non-ASCII", () => {
  const raw = "100% ✗\nok";
  const enc = encodeGrpcMessage(raw);
  assert.equal(enc, "100%25 %E2%9C%97%0Aok");
  assert.equal(decodeGrpcMessage(enc), raw);
});

Deno.test("decodeGrpcMessage() keeps a malformed escape as sent", () => {
  assert.equal(decodeGrpcMessage("50%"), "50%");
});

Deno.test("practicalTimeout() keeps timeouts a timer can take and drops longer ones (597H and up)", () => {
  assert.equal(practicalTimeout(undefined), undefined);
  assert.equal(practicalTimeout(1), 1);
  assert.equal(practicalTimeout(MAX_TIMER_MS), MAX_TIMER_MS);
  assert.equal(practicalTimeout(parseGrpcTimeout("596H")), 596 * 3_600_000);
  assert.equal(practicalTimeout(parseGrpcTimeout("597H")), undefined);
  assert.equal(practicalTimeout(2 ** 31), undefined);
});
