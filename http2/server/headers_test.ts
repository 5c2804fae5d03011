import assert from "node:assert/strict";
import { toIncomingHeaders } from "./headers.ts";

const REQUEST: [string, string][] = [
  [":method", "POST"],
  [":scheme", "http"],
  [":path", "/chat.ChatService/SendMessage"],
  [":authority", "127.0.0.1:1"],
];

Deno.test("toIncomingHeaders() inherits no name: Object.prototype's names are plain headers", () => {
  const headers = toIncomingHeaders([
    ...REQUEST,
    ["__proto__", "p"],
    ["constructor", "c"],
    ["hasownproperty", "h"],
  ]);
  assert.ok(typeof headers !== "string");
  assert.deepEqual(Object.keys(headers), [
    ":method",
    ":scheme",
    ":path",
    ":authority",
    "__proto__",
    "constructor",
    "hasownproperty",
  ]);
  assert.equal(headers["__proto__"], "p");
  assert.equal(headers["constructor"], "c");
  assert.equal(Object.getPrototypeOf(Object.getPrototypeOf(headers)), null);
  for (const name of ["toString", "valueOf", "hasOwnProperty", "x"]) {
    assert.equal((headers as Record<string, unknown>)[name], undefined, name);
  }
  // A name of Object.prototype given twice is an array, as any other.
  const twice = toIncomingHeaders([
    ...REQUEST,
    ["constructor", "1"],
    ["constructor", "2"],
  ]);
  assert.ok(typeof twice !== "string");
  assert.deepEqual(twice["constructor"], ["1", "2"]);
});

Deno.test("toIncomingHeaders() joins repeats and cookies, refuses upper case", () => {
  const headers = toIncomingHeaders([
    ...REQUEST,
    ["x-a", "1"],
    ["cookie", "a=1"],
    ["x-a", "2"],
    ["cookie", "b=2"],
    ["x-a", "3"],
    ["x-\u00e9", "latin1 lower case"],
  ]);
  assert.ok(typeof headers !== "string");
  assert.deepEqual(headers["x-a"], ["1", "2", "3"]);
  assert.equal(headers["cookie"], "a=1; b=2");
  assert.equal(headers["x-\u00e9"], "latin1 lower case");
  for (const name of ["X-a", "x-A", "content-Type", "x-\u00c9"]) {
    assert.equal(
      toIncomingHeaders([...REQUEST, [name, "v"]]),
      `uppercase header name ${name}`,
    );
  }
  assert.equal(
    toIncomingHeaders([...REQUEST.slice(1)]),
    "a request needs :method, :path and :scheme",
  );
});
