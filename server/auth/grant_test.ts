import assert from "node:assert/strict";
import { ChatError } from "../rooms/errors.ts";
import { actingUser, checkAccess, grantFromClaims } from "./grant.ts";
import { compileRoomPatterns } from "./room_patterns.ts";

function throwsCode(
  fn: () => unknown,
  code: string,
  message: RegExp,
  label = "",
) {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof ChatError, label);
    assert.equal(err.code, code, label);
    assert.match(err.message, message, label);
    return true;
  });
}

Deno.test("compileRoomPatterns() matches exact names and prefix* patterns only", () => {
  const allowed = compileRoomPatterns(["lobby", "team-*"]);
  assert.equal(allowed("lobby"), true);
  assert.equal(allowed("team-"), true);
  assert.equal(allowed("team-a"), true);
  assert.equal(allowed("lobby2"), false);
  assert.equal(allowed("team"), false);
  assert.equal(allowed(""), false);
  assert.equal(compileRoomPatterns(["*"])("anything"), true);
  assert.equal(compileRoomPatterns([])("lobby"), false);
});

Deno.test("compileRoomPatterns() refuses a star not at the end and an empty name", () => {
  assert.throws(() => compileRoomPatterns(["a*b"]), /not at its end/);
  assert.throws(() => compileRoomPatterns(["**"]), /not at its end/);
  assert.throws(() => compileRoomPatterns([""]), /empty room pattern/);
});

Deno.test("grantFromClaims() reads sub, rooms, scope and exp", () => {
  const grant = grantFromClaims({
    sub: "alice",
    rooms: ["team-*"],
    scope: "publish other",
    exp: 2000,
  });
  assert.equal(grant.user, "alice");
  assert.equal(grant.publish, true);
  assert.equal(grant.subscribe, false);
  assert.equal(grant.expiresAtMs, 2_000_000);
  assert.equal(grant.rooms?.("team-x"), true);
  const open = grantFromClaims({ sub: "bob" });
  assert.equal(open.rooms, undefined);
  assert.equal(open.publish && open.subscribe, true);
  assert.equal(open.expiresAtMs, undefined);
});

Deno.test("grantFromClaims() refuses malformed claims as UNAUTHENTICATED", () => {
  throwsCode(() => grantFromClaims({}), "unauthenticated", /no sub/);
  throwsCode(() => grantFromClaims({ sub: "" }), "unauthenticated", /no sub/);
  throwsCode(() => grantFromClaims({ sub: "  " }), "unauthenticated", /no sub/);
  throwsCode(
    () => grantFromClaims({ sub: "u".repeat(257) }),
    "unauthenticated",
    /sub \(user\) claim is longer than 256 characters/,
  );
  assert.equal(grantFromClaims({ sub: "u".repeat(256) }).user.length, 256);
  throwsCode(
    () => grantFromClaims({ sub: "a", rooms: "lobby" }),
    "unauthenticated",
    /not a list of strings/,
  );
  throwsCode(
    () => grantFromClaims({ sub: "a", rooms: ["a*b"] }),
    "unauthenticated",
    /rooms claim: .*not at its end/,
  );
  throwsCode(
    () => grantFromClaims({ sub: "a", scope: ["publish"] }),
    "unauthenticated",
    /scope claim is not a string/,
  );
});

Deno.test("actingUser() fills an empty user and denies another user's name", () => {
  const grant = grantFromClaims({ sub: "alice" });
  assert.equal(actingUser(grant, ""), "alice");
  assert.equal(actingUser(grant, "alice"), "alice");
  throwsCode(
    () => actingUser(grant, "Alice"),
    "permission_denied",
    /for user "alice", not "Alice"/,
  );
});

Deno.test("checkAccess() denies verbs outside the scope and rooms outside the claim", () => {
  const grant = grantFromClaims({
    sub: "a",
    rooms: ["lobby"],
    scope: "subscribe",
  });
  checkAccess(grant, "subscribe", "lobby");
  throwsCode(
    () => checkAccess(grant, "publish", "lobby"),
    "permission_denied",
    /scope does not allow publish/,
  );
  throwsCode(
    () => checkAccess(grant, "subscribe", "other"),
    "permission_denied",
    /does not allow room "other"/,
  );
});

Deno.test("grantFromClaims() denies the names the server speaks as", () => {
  for (const sub of ["System", "Server", "SYSTEM", "server "]) {
    throwsCode(
      () => grantFromClaims({ sub }),
      "permission_denied",
      /reserved for the server/,
    );
  }
  assert.equal(grantFromClaims({ sub: "Systematic" }).user, "Systematic");
});

Deno.test("grantFromClaims() denies a name that only looks like one the server speaks as", () => {
  for (
    const sub of [
      "\u0405ystem", // Cyrillic capital DZE for the S
      "s\u0443st\u0435m", // Cyrillic u and ie
      "S\u0435\u0433v\u0435\u0433", // Cyrillic ie and ghe
      "System\u200b", // a zero-width space after it
      "Sys\u00adtem", // a soft hyphen inside
      "Server\u0000", // a NUL after it
      "\uff33\uff59\uff53\uff54\uff45\uff4d", // fullwidth
      "\u{1d412}erver", // mathematical bold S
      "Se\u0301rver", // a combining accent
      "Ser\u03bder", // Greek nu for the v
    ]
  ) {
    throwsCode(
      () => grantFromClaims({ sub }),
      "permission_denied",
      /reserved for the server/,
      JSON.stringify(sub),
    );
  }
  for (
    const sub of [
      "Svetlana",
      "\u0421\u0432\u0435\u0442\u0430",
      "Sys tem",
      "Serve",
    ]
  ) {
    assert.equal(grantFromClaims({ sub }).user, sub);
  }
});
