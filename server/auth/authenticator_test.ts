import assert from "node:assert/strict";
import { SignJWT } from "jose";
import { ChatError } from "../rooms/errors.ts";
import {
  type AuthenticatorOptions,
  createAuthenticator,
} from "./authenticator.ts";
import { createTokenVerifier } from "./token_verifier.ts";

const SECRET = "unit-test-secret-0123456789-0123456789";

function sign(claims: Record<string, unknown>, secret = SECRET) {
  const exp = Math.floor(Date.now() / 1000) + 3600;
  return new SignJWT({ exp, ...claims }).setProtectedHeader({ alg: "HS256" })
    .sign(
      new TextEncoder().encode(secret),
    );
}

/** An authenticator over the real HS256 verifier that counts its checks. */
async function countedAuthenticator(
  options: Partial<AuthenticatorOptions> = {},
) {
  const verify = await createTokenVerifier({
    secret: SECRET,
    leewaySeconds: 0,
  });
  let checks = 0;
  const auth = createAuthenticator({
    verify: (t) => {
      checks++;
      return verify(t);
    },
    leewaySeconds: 0,
    ...options,
  });
  return { auth, checks: () => checks };
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
  let clock = Date.now();
  const { auth, checks } = await countedAuthenticator({
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
  assert.equal(checks(), 1);
  // Past exp the cached grant is not used: the token is verified again.
  clock = exp * 1000 + 1;
  const again = auth(header);
  assert.ok(again instanceof Promise);
  assert.equal(checks(), 2);
  await again;
});

Deno.test("createAuthenticator() keeps at most maxEntries tokens", async () => {
  const { auth, checks } = await countedAuthenticator({
    maxEntries: 2,
  });
  const headers = await Promise.all(
    ["a", "b", "c"].map(async (sub) => `Bearer ${await sign({ sub })}`),
  );
  for (const h of headers) await auth(h);
  assert.equal(checks(), 3);
  // "a" was the oldest and was dropped; "c" is still there.
  assert.ok(!(auth(headers[2]) instanceof Promise));
  await auth(headers[0]);
  assert.equal(checks(), 4);
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
  const { auth, checks } = await countedAuthenticator();
  const forged = `Bearer ${await sign({ sub: "a" }, "x".repeat(40))}`;
  await rejectsWith(auth(forged), /bad token signature/);
  assert.throws(() => auth(forged), /bad token signature/);
  assert.equal(checks(), 1);
  const early = `Bearer ${await sign({
    sub: "a",
    nbf: Math.floor(Date.now() / 1000) + 600,
  })}`;
  await rejectsWith(auth(early), /not yet valid/);
  await rejectsWith(auth(early), /not yet valid/);
  assert.equal(checks(), 3);
});

Deno.test("createAuthenticator() bounds the refused tokens it remembers by their total length", async () => {
  const forged = await Promise.all(
    ["a", "b", "c"].map(async (sub) =>
      `Bearer ${await sign({ sub, pad: "p".repeat(200) }, "x".repeat(40))}`
    ),
  );
  const length = forged[0].length;
  const { auth, checks } = await countedAuthenticator({
    maxRefusedChars: Math.floor(length * 2.5),
  });
  for (const h of forged) await rejectsWith(auth(h), /bad token signature/);
  assert.equal(checks(), 3);
  // Two fit: "a" was dropped for "c"; "b" and "c" are still known.
  assert.throws(() => auth(forged[1]), /bad token signature/);
  assert.throws(() => auth(forged[2]), /bad token signature/);
  assert.equal(checks(), 3);
  await rejectsWith(auth(forged[0]), /bad token signature/);
  assert.equal(checks(), 4);
  // A token longer than the whole budget is never remembered.
  const huge = `Bearer ${await sign(
    { sub: "d", pad: "p".repeat(length * 3) },
    "x".repeat(40),
  )}`;
  await rejectsWith(auth(huge), /bad token signature/);
  await rejectsWith(auth(huge), /bad token signature/);
  assert.equal(checks(), 6);
});

Deno.test("createTokenVerifier() refuses a token without exp", async () => {
  const verify = await createTokenVerifier({
    secret: SECRET,
    leewaySeconds: 0,
  });
  const token = await new SignJWT({ sub: "a" })
    .setProtectedHeader({ alg: "HS256" })
    .sign(new TextEncoder().encode(SECRET));
  await rejectsWith(verify(token), /^token has no exp$/);
});

Deno.test("createAuthenticator() shares one verification among calls bringing the same new token", async () => {
  const { auth, checks } = await countedAuthenticator();
  const header = `Bearer ${await sign({ sub: "alice" })}`;
  const calls = Array.from({ length: 5 }, () => auth(header));
  assert.ok(calls.every((c) => c === calls[0]), "one promise");
  assert.deepEqual((await Promise.all(calls)).map((g) => g.user), [
    "alice",
    "alice",
    "alice",
    "alice",
    "alice",
  ]);
  assert.equal(checks(), 1);
  // A forged one is shared and refused alike.
  const forged = `Bearer ${await sign({ sub: "a" }, "y".repeat(40))}`;
  const refused = [auth(forged), auth(forged)];
  for (const r of refused) await rejectsWith(r, /bad token signature/);
  assert.equal(checks(), 2);
});

Deno.test("createAuthenticator() refuses UNAVAILABLE past maxVerifying distinct tokens in flight", async () => {
  const verify = await createTokenVerifier({
    secret: SECRET,
    leewaySeconds: 0,
  });
  let open!: () => void;
  const gate = new Promise<void>((r) => open = r);
  const auth = createAuthenticator({
    verify: async (t) => {
      await gate;
      return verify(t);
    },
    leewaySeconds: 0,
    maxVerifying: 2,
  });
  const [a, b, c] = await Promise.all(
    ["a", "b", "c"].map(async (sub) => `Bearer ${await sign({ sub })}`),
  );
  const first = auth(a);
  const second = auth(b);
  // The same token again joins its verification; a third one is refused.
  assert.equal(auth(a), first);
  assert.throws(() => auth(c), (err: unknown) => {
    assert.ok(err instanceof ChatError);
    assert.equal(err.code, "unavailable");
    assert.match(err.message, /too many new tokens being verified at once/);
    return true;
  });
  open();
  await first;
  await second;
  // Once they are done, there is room again; cached ones cost nothing.
  assert.equal((await auth(c)).user, "c");
  assert.ok(!(auth(a) instanceof Promise));
});

Deno.test("createAuthenticator() keeps one entry per token: spaces after Bearer or the scheme's case cost no new check and push no one out", async () => {
  const { auth, checks } = await countedAuthenticator({ maxEntries: 2 });
  const alice = await sign({ sub: "alice" });
  const bob = `Bearer ${await sign({ sub: "bob" })}`;
  assert.equal((await auth(bob)).user, "bob");
  assert.equal((await auth(`Bearer ${alice}`)).user, "alice");
  assert.equal(checks(), 2);
  for (let n = 2; n < 200; n++) {
    const padded = auth(
      `${n % 2 ? "bearer" : "Bearer"}${" ".repeat(n)}${alice}`,
    );
    // From the cache, at once: no promise, no check.
    assert.ok(!(padded instanceof Promise));
    assert.equal(padded.user, "alice");
  }
  assert.equal(checks(), 2);
  // Bob is still cached: the variants took no places.
  assert.ok(!(auth(bob) instanceof Promise));
  // A refused token padded many ways is one refusal, checked once.
  const forged = await sign(
    { sub: "mallory" },
    "another-secret-0123456789-abcdef",
  );
  for (let n = 1; n < 50; n++) {
    await rejectsWith(
      (async () => await auth(`Bearer${" ".repeat(n)}${forged}`))(),
      /signature/,
    );
  }
  assert.equal(checks(), 3);
});
