import assert from "node:assert/strict";
import { nextDecimal } from "./decimal.ts";

Deno.test("nextDecimal() counts as String(n + 1) does, across every carry", () => {
  let text = "0";
  for (let n = 0; n < 200_000; n++) {
    assert.equal(text, String(n));
    text = nextDecimal(text);
  }
  for (const n of [9, 99, 1_999, 999_999_999, 4_999_999_999_999, 2 ** 52]) {
    assert.equal(nextDecimal(String(n)), String(n + 1));
  }
});
