/**
 * Upgrading a data directory in place from `--store sqlite` to the default
 * log store (server/store/log_import.ts), with core processes and grpc-js
 * clients: the same epochs and offsets, resume with no gap, history, ids
 * going on, one import only, a damaged file refused.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import type { Message } from "../gen/chat_pb.ts";
import { type ChatClient, createChatClient } from "../client/rpc.ts";
import { DATA_FILE } from "../server/store/sqlite_store.ts";
import { spawnCore } from "./support/core_process.ts";
import { take } from "./support/core.ts";
import { runDeno, withTempDir } from "./support/process.ts";

const MAIN = new URL("../server/main.ts", import.meta.url).pathname;
const ROOMS = [["a", 5], ["b", 3], ["c", 1]] as const;
const idNumber = (id: string) => Number(id.replace(/^msg_/, ""));

const coreArgs = (dataDir: string) => [
  "--alive-interval-ms",
  "0",
  "--shutdown-grace-ms",
  "200",
  "--data-dir",
  dataDir,
];

/** The welcome of `room`: its epoch and last offset. */
async function welcome(client: ChatClient, room: string) {
  const s = client.subscribeMessages({ room, user: "look" });
  try {
    const [w] = await take<Message>(s, 1);
    return { epoch: w.epoch, offset: w.offset };
  } finally {
    s.cancel();
  }
}

Deno.test("a --store sqlite data dir started with the default store: same epochs and offsets, resume with no gap, history, ids go on; imported once", async () => {
  await withTempDir(async (dataDir) => {
    const sent = new Map<string, { id: string; offset: bigint }>();
    const epochs = new Map<string, string>();
    {
      const core = await spawnCore([...coreArgs(dataDir), "--store", "sqlite"]);
      const client = createChatClient(core.addr);
      try {
        for (const [room, n] of ROOMS) {
          for (let i = 1; i <= n; i++) {
            const res = await client.sendMessage({
              user: "ann",
              room,
              content: `${room}${i}`,
            });
            assert.equal(res.offset, BigInt(i));
            sent.set(`${room}${i}`, { id: res.messageId, offset: res.offset });
          }
          epochs.set(room, (await welcome(client, room)).epoch);
        }
      } finally {
        client.close();
        // kill -9: the last commits are in chat.sqlite-wal only.
        await core.kill("SIGKILL");
      }
    }
    const lastId = Math.max(...[...sent.values()].map((s) => idNumber(s.id)));
    const file = join(dataDir, DATA_FILE);
    assert.ok((await Deno.stat(`${file}-wal`)).size > 0, "commits in the WAL");
    // --store sqlite neither imports nor writes a log.
    for await (const e of Deno.readDir(dataDir)) {
      assert.doesNotMatch(e.name, /^history-|\.import/);
    }

    {
      const core = await spawnCore(coreArgs(dataDir));
      const client = createChatClient(core.addr);
      try {
        assert.match(
          core.output(),
          new RegExp(
            `history: imported 3 rooms and 9 messages \\(message ids from msg_${
              lastId + 1
            }\\) from ${file} into the log; the file is now ${file}\\.imported`,
          ),
        );
        // One line about it.
        assert.equal(core.output().match(/^.* WARN history: /gm)?.length, 1);
        // Resume room a from offset 2 in its old epoch: 3, 4, 5, then live.
        const s = client.subscribeMessages({
          room: "a",
          user: "w",
          epoch: epochs.get("a")!,
          sinceOffset: 2n,
        });
        try {
          const [w, ...replayed] = await take<Message>(s, 4);
          assert.equal(w.epoch, epochs.get("a"));
          assert.equal(w.offset, 5n);
          assert.deepEqual(
            replayed.map((m) => [m.offset, m.content, m.id, m.epoch]),
            ["a3", "a4", "a5"].map((c) => [
              sent.get(c)!.offset,
              c,
              sent.get(c)!.id,
              epochs.get("a"),
            ]),
          );
          const res = await client.sendMessage({
            user: "ann",
            room: "a",
            content: "a6",
          });
          assert.equal(res.offset, 6n);
          assert.ok(idNumber(res.messageId) > lastId, res.messageId);
          const [live] = await take<Message>(s, 1);
          assert.deepEqual([live.offset, live.content, live.epoch], [
            6n,
            "a6",
            epochs.get("a"),
          ]);
        } finally {
          s.cancel();
        }
        // history: 3 on room b: the same messages, ids and offsets.
        const h = client.subscribeMessages({
          room: "b",
          user: "w",
          history: 3,
        });
        try {
          const [w, ...history] = await take<Message>(h, 4);
          assert.deepEqual([w.epoch, w.offset], [epochs.get("b"), 3n]);
          assert.deepEqual(
            history.map((m) => [m.offset, m.content, m.id]),
            ["b1", "b2", "b3"].map((c) => [
              sent.get(c)!.offset,
              c,
              sent.get(c)!.id,
            ]),
          );
        } finally {
          h.cancel();
        }
        assert.deepEqual(await welcome(client, "c"), {
          epoch: epochs.get("c"),
          offset: 1n,
        });
      } finally {
        client.close();
        await core.kill("SIGTERM");
      }
    }
    for (const suffix of ["", "-wal", "-shm"]) {
      assert.ok(!(await exists(file + suffix)), `chat.sqlite${suffix} gone`);
    }
    assert.ok(await exists(`${file}.imported`));

    // A restart reads the log; nothing is imported a second time.
    {
      const core = await spawnCore(coreArgs(dataDir));
      const client = createChatClient(core.addr);
      try {
        assert.doesNotMatch(core.output(), /imported/);
        assert.deepEqual(await welcome(client, "a"), {
          epoch: epochs.get("a"),
          offset: 6n,
        });
        const res = await client.sendMessage({
          user: "ann",
          room: "b",
          content: "b4",
        });
        assert.equal(res.offset, 4n);
        assert.ok(idNumber(res.messageId) > lastId + 1, res.messageId);
      } finally {
        client.close();
        await core.kill("SIGTERM");
      }
    }
  });
});

async function exists(path: string) {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}

Deno.test("server/main.ts with the default store refuses to import a damaged chat.sqlite: exit 2, the file named, nothing wiped", async () => {
  await withTempDir(async (dataDir) => {
    const file = join(dataDir, DATA_FILE);
    const junk = new TextEncoder().encode("not a database\n".repeat(300));
    await Deno.writeFile(file, junk);
    const out = await runDeno([
      "run",
      "-A",
      MAIN,
      "--port",
      "0",
      "--data-dir",
      dataDir,
    ]);
    assert.equal(out.code, 2, out.stderr);
    assert.match(out.stderr, new RegExp(`data file ${file} is unreadable`));
    assert.deepEqual(await Deno.readFile(file), junk);
    assert.ok(!(await exists(`${file}.imported`)));
  });
});
