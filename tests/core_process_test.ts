import assert from "node:assert/strict";
import { status } from "@grpc/grpc-js";
import { createChatClient } from "../client/rpc.ts";
import { streamError, take } from "./support/core.ts";

const MAIN = new URL("../server/main.ts", import.meta.url).pathname;

async function readUntil(
  reader: ReadableStreamDefaultReader<string>,
  pattern: RegExp,
): Promise<string> {
  let seen = "";
  while (!pattern.test(seen)) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`output ended before ${pattern}: ${seen}`);
    seen += value;
  }
  return seen;
}

Deno.test("server/main.ts on SIGTERM ends open streams with UNAVAILABLE and exits 0", async () => {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      MAIN,
      "--port",
      "0",
      "--shutdown-grace-ms",
      "3000",
      "--store",
      "memory",
    ],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  const banner = await readUntil(reader, /listening on 127\.0\.0\.1:(\d+)/);
  const port = banner.match(/listening on 127\.0\.0\.1:(\d+)/)![1];
  const client = createChatClient(`127.0.0.1:${port}`);
  try {
    const sub = client.subscribeMessages({ room: "r", user: "u" });
    await take(sub, 1);
    const ended = streamError(sub);
    child.kill("SIGTERM");
    const err = await ended;
    assert.equal(err.code, status.UNAVAILABLE);
    assert.equal(err.details, "server is shutting down");
    const exit = await child.status;
    assert.equal(exit.code, 0);
    const rest = await readUntil(reader, /stopped/);
    assert.match(rest, /SIGTERM received/);
  } finally {
    client.close();
    await reader.cancel().catch(() => {});
  }
});

Deno.test("server/main.ts refuses a bad flag with a message and exit code 2", async () => {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", MAIN, "--port", "99999"],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(out.code, 2);
  assert.match(
    new TextDecoder().decode(out.stderr),
    /--port must be an integer from 0 to 65535, got "99999"/,
  );
});

Deno.test("server/main.ts takes PORT from the environment", async () => {
  const probe = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (probe.addr as Deno.NetAddr).port;
  probe.close();
  const dataDir = await Deno.makeTempDir();
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", MAIN],
    env: { PORT: String(port), CHAT_DATA_DIR: dataDir },
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  try {
    await readUntil(reader, new RegExp(`listening on 127\\.0\\.0\\.1:${port}`));
    const client = createChatClient(`127.0.0.1:${port}`);
    const res = await client.sendMessage({
      user: "u",
      room: "r",
      content: "c",
    });
    assert.equal(res.messageId, "msg_1");
    client.close();
    // The default store is the log, in CHAT_DATA_DIR.
    assert.ok(Deno.statSync(`${dataDir}/history-000000000001.log`).isFile);
  } finally {
    child.kill("SIGTERM");
    await child.status;
    await reader.cancel().catch(() => {});
    await Deno.remove(dataDir, { recursive: true });
  }
});
