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
  ]);
  assert.ok(typeof headers !== "string");
  assert.deepEqual(headers["x-a"], ["1", "2", "3"]);
  assert.equal(headers["cookie"], "a=1; b=2");
  for (const name of ["X-a", "x-A", "content-Type"]) {
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

Deno.test("toIncomingHeaders() refuses names that are not lowercase tokens and values with NUL, CR, LF or edge whitespace (RFC 9113 §8.2.1)", () => {
  for (
    const name of [
      "bad name",
      "x-\u00e9",
      "x-\u00c9",
      "x:a",
      "x\r\ny",
      "x\u0000",
      "x\u007f",
      "x(y)",
      "",
    ]
  ) {
    const refused = toIncomingHeaders([...REQUEST, [name, "v"]]);
    assert.equal(typeof refused, "string", JSON.stringify(name));
    assert.notEqual(refused, "uppercase header name " + name);
  }
  for (
    const value of [
      "a\r\nb",
      "a\nb",
      "a\rb",
      "a\u0000b",
      " a",
      "a ",
      "\ta",
      "a\t",
    ]
  ) {
    assert.equal(
      toIncomingHeaders([...REQUEST, ["x-a", value]]),
      'malformed value of header "x-a"',
      JSON.stringify(value),
    );
  }
  assert.equal(
    toIncomingHeaders([[":method", "POST"], [":scheme", "http"], [
      ":path",
      "/a\r\nb",
    ]]),
    'malformed value of header ":path"',
  );
  // Tokens, inner spaces and tabs, obs-text and empty values stay legal.
  const headers = toIncomingHeaders([
    ...REQUEST,
    ["x-ok!#$%&'*+.^_`|~09", "a b\tc"],
    ["x-latin1", "caf\u00e9"],
    ["x-empty", ""],
  ]);
  assert.ok(typeof headers !== "string");
  assert.equal(headers["x-ok!#$%&'*+.^_`|~09"], "a b\tc");
  assert.equal(headers["x-latin1"], "caf\u00e9");
  assert.equal(headers["x-empty"], "");
});
