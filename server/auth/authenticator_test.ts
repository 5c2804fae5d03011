import assert from "node:assert/strict";
import { SignJWT } from "jose";
import { ChatError } from "../rooms/errors.ts";
import { createAuthenticator } from "./authenticator.ts";
import { createTokenVerifier } from "./token_verifier.ts";

const SECRET = "unit-test-secret-0123456789-0123456789";

function sign(claims: Record<string, unknown>, secret = SECRET) {
  return new SignJWT(claims).setProtectedHeader({ alg: "HS256" }).sign(
    new TextEncoder().encode(secret),
  );
}

async function rejectsWith(p: unknown, message: RegExp) {
  await assert.rejects(async () => await p, (err: unknown) => {
    assert.ok(err instanceof ChatError);
    assert.equal(err.code, "unauthenticated");
    assert.match(err.message, message);
    return true;
  });
}

Deno.test("createAuthenticator() verifies once, then answers from its cache until exp", async () => {
  let verified = 0;
  const verify = await createTokenVerifier({
    secret: SECRET,
    leewaySeconds: 0,
  });
  let clock = Date.now();
  const auth = createAuthenticator({
    verify: (t) => {
      verified++;
      return verify(t);
    },
    leewaySeconds: 0,
    now: () => clock,
  });
  const exp = Math.floor(clock / 1000) + 60;
  const header = `Bearer ${await sign({ sub: "alice", exp })}`;
  const first = auth(header);
  assert.ok(first instanceof Promise);
  assert.equal((await first).user, "alice");
  const second = auth(header);
  assert.ok(!(second instanceof Promise));
  assert.equal(second.user, "alice");
  assert.equal(verified, 1);
  // Past exp the cached grant is not used: the token is verified again.
  clock = exp * 1000 + 1;
  const again = auth(header);
  assert.ok(again instanceof Promise);
  assert.equal(verified, 2);
  await again;
});

Deno.test("createAuthenticator() keeps at most maxEntries tokens", async () => {
  let verified = 0;
  const verify = await createTokenVerifier({
    secret: SECRET,
    leewaySeconds: 0,
  });
  const auth = createAuthenticator({
    verify: (t) => {
      verified++;
      return verify(t);
    },
    leewaySeconds: 0,
    maxEntries: 2,
  });
  const headers = await Promise.all(
    ["a", "b", "c"].map(async (sub) => `Bearer ${await sign({ sub })}`),
  );
  for (const h of headers) await auth(h);
  assert.equal(verified, 3);
  // "a" was the oldest and was dropped; "c" is still there.
  assert.ok(!(auth(headers[2]) instanceof Promise));
  await auth(headers[0]);
  assert.equal(verified, 4);
});

Deno.test("createAuthenticator() refuses a missing or non-Bearer header synchronously", async () => {
  const auth = createAuthenticator({
    verify: await createTokenVerifier({ secret: SECRET, leewaySeconds: 0 }),
    leewaySeconds: 0,
  });
  assert.throws(() => auth(undefined), /missing token/);
  assert.throws(() => auth("Basic abc"), /malformed authorization/);
  assert.throws(() => auth("Bearer "), /malformed authorization/);
  await rejectsWith(auth("Bearer a.b.c"), /malformed token/);
  await rejectsWith(
    auth(
      `Bearer ${await sign(
        { sub: "a" },
        "wrong-secret-0123456789-0123456789",
      )}`,
    ),
    /bad token signature/,
  );
  await rejectsWith(auth(`Bearer ${await sign({})}`), /no sub/);
});

Deno.test("createTokenVerifier() applies the leeway to exp", async () => {
  const exp = Math.floor(Date.now() / 1000) - 3;
  const token = await sign({ sub: "a", exp });
  const strict = await createTokenVerifier({
    secret: SECRET,
    leewaySeconds: 0,
  });
  await rejectsWith(strict(token), /token expired/);
  const lenient = await createTokenVerifier({
    secret: SECRET,
    leewaySeconds: 30,
  });
  assert.equal((await lenient(token)).sub, "a");
});

Deno.test("createTokenVerifier() refuses a key of an unsupported type", async () => {
  await assert.rejects(
    createTokenVerifier({ publicKeyPem: "nonsense", leewaySeconds: 0 }),
    /not a PEM public key/,
  );
});

Deno.test("createAuthenticator() remembers a refused token, but not one that is not valid yet", async () => {
  let verified = 0;
  const verify = await createTokenVerifier({
    secret: SECRET,
    leewaySeconds: 0,
  });
  const auth = createAuthenticator({
    verify: (t) => {
      verified++;
      return verify(t);
    },
    leewaySeconds: 0,
  });
  const forged = `Bearer ${await sign({ sub: "a" }, "x".repeat(40))}`;
  await rejectsWith(auth(forged), /bad token signature/);
  assert.throws(() => auth(forged), /bad token signature/);
  assert.equal(verified, 1);
  const early = `Bearer ${await sign({
    sub: "a",
    nbf: Math.floor(Date.now() / 1000) + 600,
  })}`;
  await rejectsWith(auth(early), /not yet valid/);
  await rejectsWith(auth(early), /not yet valid/);
  assert.equal(verified, 3);
});

Deno.test("createAuthenticator() bounds the refused tokens it remembers by their total length", async () => {
  let verified = 0;
  const verify = await createTokenVerifier({
    secret: SECRET,
    leewaySeconds: 0,
  });
  const forged = await Promise.all(
    ["a", "b", "c"].map(async (sub) =>
      `Bearer ${await sign({ sub, pad: "p".repeat(200) }, "x".repeat(40))}`
    ),
  );
  const length = forged[0].length;
  const auth = createAuthenticator({
    verify: (t) => {
      verified++;
      return verify(t);
    },
    leewaySeconds: 0,
    maxRefusedChars: Math.floor(length * 2.5),
  });
  for (const h of forged) await rejectsWith(auth(h), /bad token signature/);
  assert.equal(verified, 3);
  // Two fit: "a" was dropped for "c"; "b" and "c" are still known.
  assert.throws(() => auth(forged[1]), /bad token signature/);
  assert.throws(() => auth(forged[2]), /bad token signature/);
  assert.equal(verified, 3);
  await rejectsWith(auth(forged[0]), /bad token signature/);
  assert.equal(verified, 4);
  // A token longer than the whole budget is never remembered.
  const huge = `Bearer ${await sign(
    { sub: "d", pad: "p".repeat(length * 3) },
    "x".repeat(40),
  )}`;
  await rejectsWith(auth(huge), /bad token signature/);
  await rejectsWith(auth(huge), /bad token signature/);
  assert.equal(verified, 6);
});
