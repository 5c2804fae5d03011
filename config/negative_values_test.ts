import assert from "node:assert/strict";
import { parseArgs } from "node:util";
import { joinNegativeValues } from "./negative_values.ts";

const options = {
  port: { type: "string" },
  presence: { type: "boolean" },
  room: { type: "string" },
} as const;

Deno.test("joinNegativeValues() hands a string flag its negative number, as --flag=-N", () => {
  assert.deepEqual(
    joinNegativeValues(["--port", "-1", "--room", "-0.5"], options),
    ["--port=-1", "--room=-0.5"],
  );
  const { values } = parseArgs({
    args: joinNegativeValues(["--port", "-1"], options),
    options,
    strict: true,
  });
  assert.equal(values.port, "-1");
});

Deno.test("joinNegativeValues() leaves everything else to parseArgs", () => {
  for (
    const args of [
      ["--port=-1"],
      ["--room", "--port", "1"],
      ["--presence", "-1"],
      ["--bogus", "-1"],
      ["--", "--port", "-1"],
      ["--port"],
    ]
  ) assert.deepEqual(joinNegativeValues(args, options), args);
});
