import assert from "node:assert/strict";
import { parseArgs } from "node:util";
import { argsErrorLine } from "./args_error.ts";

const options = {
  port: { type: "string" },
  host: { type: "string" },
  presence: { type: "boolean" },
} as const;

function refusal(args: string[]): string {
  try {
    parseArgs({ args, options, strict: true, allowPositionals: false });
  } catch (err) {
    return argsErrorLine(err);
  }
  throw new Error(`parseArgs took ${args}`);
}

Deno.test("argsErrorLine() says a string flag followed by another flag needs a value, in one line", () => {
  assert.equal(
    refusal(["--port", "--host", "0.0.0.0"]),
    "--port needs a value",
  );
});

Deno.test("argsErrorLine() keeps parseArgs's other refusals, each one line", () => {
  assert.equal(refusal(["--bogus"]), "Unknown option '--bogus'");
  assert.equal(
    refusal(["--port"]),
    "Option '--port <value>' argument missing",
  );
  assert.equal(
    refusal(["--presence=yes"]),
    "Option '--presence' does not take an argument",
  );
  assert.match(refusal(["extra"]), /^Unexpected argument 'extra'/);
});
