import assert from "node:assert/strict";
import { parseNumberFlag } from "./number_flag.ts";

Deno.test("parseNumberFlag() takes decimal integers within the range", () => {
  assert.equal(parseNumberFlag("--port", "8080", { min: 0, max: 65535 }), 8080);
  assert.equal(parseNumberFlag("--port", " 0 ", { min: 0, max: 65535 }), 0);
  assert.equal(
    parseNumberFlag("-d", "0.5", { min: 0.001, integer: false }),
    0.5,
  );
});

Deno.test("parseNumberFlag() refuses other spellings and out-of-range values, naming both", () => {
  for (const raw of ["", " ", "0x10", "1e3", "Infinity", "-1", "1.5", "abc"]) {
    assert.throws(
      () => parseNumberFlag("--port", raw, { min: 0, max: 65535 }),
      (e) =>
        e instanceof RangeError &&
        e.message === `--port must be an integer from 0 to 65535, got "${raw}"`,
    );
  }
  assert.throws(
    () => parseNumberFlag("--port", "70000", { min: 0, max: 65535 }),
    /from 0 to 65535, got "70000"/,
  );
  assert.throws(
    () => parseNumberFlag("--count", "0", { min: 1 }),
    /^RangeError: --count must be an integer >= 1, got "0"$/,
  );
  assert.throws(
    () =>
      parseNumberFlag("-d", "121", { min: 0.001, max: 120, integer: false }),
    /-d must be a number from 0.001 to 120, got "121"/,
  );
});

Deno.test("parseNumberFlag() throws the caller's error type", () => {
  class UsageError extends Error {}
  assert.throws(
    () => parseNumberFlag("--n", "x", { min: 1 }, UsageError),
    UsageError,
  );
});
