import assert from "node:assert/strict";
import { startCoreServer } from "../server/server.ts";
import { followRoom } from "./room_follower.ts";
import { createChatClient } from "./rpc.ts";

Deno.test("followRoom() backs off while the core is down and says how the resume went", async () => {
  let core = await startCoreServer({ port: 0 });
  const port = core.port;
  const client = createChatClient(`127.0.0.1:${port}`, {
    "grpc.use_local_subchannel_pool": 1,
  });
  const notes: string[] = [];
  const stop = new AbortController();
  const follower = followRoom(client, {
    room: "r",
    user: "u",
    history: 0,
    timeoutMs: 2000,
    minRetryMs: 100,
    maxRetryMs: 400,
    signal: stop.signal,
  }, {
    show: () => {},
    note: (t) => notes.push(t),
    resumed: () => notes.push("resumed"),
    fatal: (r) => notes.push(`fatal ${r}`),
  });
  try {
    assert.deepEqual(await follower.joined, { ok: true });
    assert.equal(follower.connected(), true);
    await core.shutdown(100);
    while (notes.length < 4) await new Promise((r) => setTimeout(r, 20));
    assert.equal(follower.connected(), false);
    const delays = notes.slice(0, 4).map((n) => /in ([\d.]+) s$/.exec(n)?.[1]);
    assert.deepEqual(delays, ["0.1", "0.2", "0.4", "0.4"], notes.join("\n"));
    core = await startCoreServer({ port });
    while (!notes.includes("resumed")) {
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.match(notes.at(-2)!, /^-- reconnected to r: /);
  } finally {
    stop.abort();
    await follower.done;
    client.close();
    await core.shutdown(100);
  }
});
