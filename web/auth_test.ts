import assert from "node:assert/strict";
import {
  authMetadata,
  renewalDelayMs,
  resolveToken,
  tokenExpiryMs,
  tokenRefusals,
} from "./auth.ts";

/** An edge stand-in on a real socket: answers /auth/dev-token with `reply`. */
function edge(reply: (user: string) => Response) {
  const seen: string[] = [];
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    (req) => {
      const url = new URL(req.url);
      if (url.pathname !== "/auth/dev-token") {
        return new Response("no", { status: 500 });
      }
      const user = url.searchParams.get("user") ?? "";
      seen.push(user);
      return reply(user);
    },
  );
  return {
    origin: `http://127.0.0.1:${server.addr.port}`,
    seen,
    close: () => server.shutdown(),
  };
}

Deno.test("resolveToken() asks the edge for a development token when none is pasted", async () => {
  const e = edge((user) => Response.json({ token: `tok-${user}` }));
  try {
    assert.deepEqual(await resolveToken("", "ann lee", e.origin), {
      token: "tok-ann lee",
      source: "development",
    });
    assert.deepEqual(e.seen, ["ann lee"]);
  } finally {
    await e.close();
  }
});

Deno.test("resolveToken() runs without a token when the edge answers 204 or (older edges) 404", async () => {
  for (const status of [204, 404]) {
    const e = edge(() =>
      new Response(status === 204 ? null : "not found", { status })
    );
    try {
      assert.deepEqual(await resolveToken("  ", "ann", e.origin), {
        token: "",
        source: "none",
      });
    } finally {
      await e.close();
    }
  }
});

Deno.test("resolveToken() prefers a pasted token, without Bearer, and asks nothing", async () => {
  const e = edge(() => Response.json({ token: "dev" }));
  try {
    assert.deepEqual(await resolveToken(" Bearer abc.def ", "ann", e.origin), {
      token: "abc.def",
      source: "pasted",
    });
    assert.deepEqual(e.seen, []);
  } finally {
    await e.close();
  }
});

Deno.test("resolveToken() throws a clear error for another status or a bad body", async () => {
  const bad = edge(() => new Response("boom", { status: 503 }));
  const empty = edge(() => Response.json({ nope: 1 }));
  try {
    await assert.rejects(
      resolveToken("", "ann", bad.origin),
      /refused a development token \(HTTP 503\)/,
    );
    await assert.rejects(
      resolveToken("", "ann", empty.origin),
      /answer has no token/,
    );
  } finally {
    await bad.close();
    await empty.close();
  }
});

Deno.test("authMetadata() carries a Bearer token, or nothing", () => {
  assert.deepEqual(authMetadata("t"), { authorization: "Bearer t" });
  assert.deepEqual(authMetadata(""), {});
});

Deno.test("tokenExpiryMs() reads a JWT's exp (base64url, unchecked); undefined for anything else", () => {
  const jwt = (payload: unknown) =>
    `e30.${
      btoa(JSON.stringify(payload)).replace(/\+/g, "-").replace(/\//g, "_")
        .replace(/=+$/, "")
    }.sig`;
  assert.equal(tokenExpiryMs(jwt({ sub: "a", exp: 1_800_000_000 })), 1.8e12);
  // A payload whose base64url needs the - and _ letters.
  assert.equal(tokenExpiryMs(jwt({ sub: "?>?>?>~~~", exp: 5 })), 5000);
  assert.equal(tokenExpiryMs(jwt({ sub: "a" })), undefined);
  assert.equal(tokenExpiryMs(jwt({ exp: "soon" })), undefined);
  assert.equal(tokenExpiryMs("not-a-jwt"), undefined);
  assert.equal(tokenExpiryMs("a.%%%.c"), undefined);
  assert.equal(tokenExpiryMs(""), undefined);
});

Deno.test("renewalDelayMs() renews a minute before expiry, or halfway for a short token, never in the past", () => {
  assert.equal(renewalDelayMs(3_600_000, 0), 3_540_000);
  assert.equal(renewalDelayMs(60_000, 0), 30_000);
  assert.equal(renewalDelayMs(1_000, 2_000), 0);
});

Deno.test("tokenRefusals(): a refusal is final for the token a stream opened with, not for one replaced since or being renewed", () => {
  let token = "a";
  let renewing = false;
  const refusals = tokenRefusals({
    current: () => token,
    renewing: () => renewing,
  });
  refusals.opened();
  assert.equal(refusals.final(), true);
  token = "b";
  assert.equal(refusals.final(), false);
  refusals.opened();
  assert.equal(refusals.final(), true);
  renewing = true;
  assert.equal(refusals.final(), false);
  assert.equal(tokenRefusals().final(), true);
});
