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

Deno.test("parseGrpcTimeout() agrees with the grammar's RegExp", () => {
  const units: Record<string, number> = {
    H: 3_600_000,
    M: 60_000,
    S: 1000,
    m: 1,
    u: 0.001,
    n: 0.000001,
  };
  const reference = (v: string) => {
    const m = /^(\d{1,8})([HMSmun])$/.exec(v);
    if (!m) return undefined;
    const ms = Number(m[1]) * units[m[2]];
    return ms > 0 && ms < 1 ? 1 : Math.ceil(ms);
  };
  const values = [
    "0m",
    "0n",
    "00000001n",
    "99999999H",
    "99999999n",
    "12345678u",
    "1x",
    "1/",
    "1:",
    "/1S",
    ":1S",
    "1SS",
    "S1",
    "1\u0660S",
    "\u00b9S",
    "1HS",
    " 1S",
    "1S ",
    "+1S",
    "1e3m",
    "0x1S",
    "1_0S",
  ];
  for (const unit of "HMSmunhsUN") {
    for (const digits of ["1", "7", "10", "999", "12345678", "123456789"]) {
      values.push(digits + unit);
    }
  }
  for (const v of values) assert.equal(parseGrpcTimeout(v), reference(v), v);
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
