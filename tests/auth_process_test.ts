/**
 * Auth from the command line: the core's start-up line says whether tokens
 * are required (once), and `deno task token` signs tokens that core accepts.
 */
import assert from "node:assert/strict";
import { status } from "@grpc/grpc-js";
import { createChatClient } from "../client/rpc.ts";
import { bearer, SECRET } from "./support/auth.ts";
import { rejection } from "./support/core.ts";

const MAIN = new URL("../server/main.ts", import.meta.url).pathname;
const TOKEN = new URL("../tools/token/main.ts", import.meta.url).pathname;

async function token(args: string[], env: Record<string, string> = {}) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-env", TOKEN, ...args],
    env,
    stdout: "piped",
    stderr: "piped",
  }).output();
  return {
    code: out.code,
    stdout: new TextDecoder().decode(out.stdout).trim(),
    stderr: new TextDecoder().decode(out.stderr),
  };
}

/** Starts server/main.ts; resolves with its port and output so far. */
async function startMain(env: Record<string, string>) {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", MAIN, "--port", "0"],
    env,
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let seen = "";
  while (!/listening on 127\.0\.0\.1:(\d+)/.test(seen)) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`core exited: ${seen}`);
    seen += value;
  }
  const port = Number(seen.match(/listening on 127\.0\.0\.1:(\d+)/)![1]);
  return {
    port,
    seen,
    async stop() {
      child.kill("SIGTERM");
      await child.status;
      await reader.cancel().catch(() => {});
    },
  };
}

Deno.test("deno task token signs the claims asked for; the core started with CHAT_JWT_SECRET accepts it", async () => {
  const core = await startMain({ CHAT_JWT_SECRET: SECRET });
  const clients = [];
  try {
    assert.equal(core.seen.match(/auth: /g)?.length, 1, core.seen);
    assert.match(
      core.seen,
      /auth: JWT bearer tokens required \(HS256 secret\)/,
    );
    const made = await token(
      [
        "--user",
        "dana",
        "--rooms",
        "lobby,team-*",
        "--scope",
        "publish",
        "--ttl",
        "90",
      ],
      { CHAT_JWT_SECRET: SECRET },
    );
    assert.equal(made.code, 0, made.stderr);
    const claims = JSON.parse(atob(made.stdout.split(".")[1]));
    assert.equal(claims.sub, "dana");
    assert.deepEqual(claims.rooms, ["lobby", "team-*"]);
    assert.equal(claims.scope, "publish");
    assert.equal(claims.exp - claims.iat, 90);
    const dana = createChatClient(
      `127.0.0.1:${core.port}`,
      bearer(made.stdout),
    );
    const anonymous = createChatClient(`127.0.0.1:${core.port}`, {
      "test.c": 2,
    });
    clients.push(dana, anonymous);
    await dana.sendMessage({ user: "", room: "team-x", content: "hi" });
    const denied = await rejection(
      dana.sendMessage({ user: "", room: "other", content: "hi" }),
    );
    assert.equal(denied.code, status.PERMISSION_DENIED);
    const unauth = await rejection(
      anonymous.sendMessage({ user: "dana", room: "team-x", content: "hi" }),
    );
    assert.equal(unauth.code, status.UNAUTHENTICATED);
  } finally {
    for (const c of clients) c.close();
    await core.stop();
  }
});

Deno.test("server/main.ts without a key says once that it runs open", async () => {
  const core = await startMain({});
  try {
    assert.equal(core.seen.match(/auth: /g)?.length, 1, core.seen);
    assert.match(core.seen, /auth: off, anyone who reaches this port/);
  } finally {
    await core.stop();
  }
});

Deno.test("deno task token refuses a missing user, secret or a bad ttl with exit code 2", async () => {
  const noUser = await token([], { CHAT_JWT_SECRET: SECRET });
  assert.equal(noUser.code, 2);
  assert.match(noUser.stderr, /--user is required/);
  const noSecret = await token(["--user", "a"]);
  assert.equal(noSecret.code, 2);
  assert.match(noSecret.stderr, /no secret/);
  const badTtl = await token(["--user", "a", "--ttl", "soon"], {
    CHAT_JWT_SECRET: SECRET,
  });
  assert.equal(badTtl.code, 2);
  assert.match(badTtl.stderr, /--ttl must look like/);
});
