import assert from "node:assert/strict";
import { join } from "node:path";
import type { HistoryLimits, HistoryStore } from "../rooms/history_store.ts";
import { withTempDir } from "../../tests/support/process.ts";
import { COMPACTION_STEPS } from "./log_compaction.ts";
import { exists, listDir } from "./log_files.ts";
import { importSqlite, type ImportStep } from "./log_import.ts";
import { openLogStore } from "./log_store.ts";
import { DATA_FILE, openSqliteStore } from "./sqlite_store.ts";
import { StoreOpenError } from "./store_open_error.ts";

const encoder = new TextEncoder();
const body = (s: string) => encoder.encode(s);
const text = (b: Uint8Array) => new TextDecoder().decode(b);
const CHILD =
  new URL("../../tests/fixtures/log_import_child.ts", import.meta.url)
    .pathname;
const HOUR = 3600_000;

/** What a store answers about `rooms`: positions, retained messages, last id. */
async function answers(store: HistoryStore, rooms: readonly string[]) {
  const out: Record<string, unknown> = {};
  for (const room of rooms) {
    out[room] = {
      position: await store.position(room),
      messages: (await store.read(room, 0, 1_000_000)).map((m) => [
        m.offset,
        text(m.body),
      ]),
    };
  }
  return { lastMessageId: store.lastMessageId, rooms: out };
}

/**
 * Writes rooms into `<dir>/chat.sqlite` with the SQLite store: `counts`
 * messages per room (`big`: some of 300 kB), the first two of room "a" and
 * all of room "old" two hours old. Returns the last message id.
 */
async function writeSqlite(
  dir: string,
  counts: Record<string, number>,
  big = false,
): Promise<number> {
  const store = openSqliteStore({ dataDir: dir, size: 1_000_000, ttlMs: 0 });
  let id = 0;
  try {
    const now = Date.now();
    for (const [room, n] of Object.entries(counts)) {
      for (let i = 1; i <= n; i++) {
        const old = room === "old" || (room === "a" && i <= 2);
        const pad = big && i % 3 === 0 ? "y".repeat(300_000) : "";
        await store.append([{
          room,
          body: body(`${room} ${i} ${pad}`),
          timeMs: old ? now - 2 * HOUR : now,
        }], ++id);
      }
    }
  } finally {
    await store.close();
  }
  return id;
}

/** What a store opened with `open` answers about `rooms` (then closed). */
async function answersOf(open: () => HistoryStore, rooms: readonly string[]) {
  const store = open();
  try {
    return await answers(store, rooms);
  } finally {
    await store.close();
  }
}

/** The SQLite store's answers with `limits`: the import's oracle. */
const sqliteAnswers = (
  dir: string,
  limits: HistoryLimits,
  rooms: readonly string[],
) => answersOf(() => openSqliteStore({ dataDir: dir, ...limits }), rooms);

const logAnswers = (
  dir: string,
  limits: HistoryLimits,
  rooms: readonly string[],
) => answersOf(() => openLogStore({ dataDir: dir, ...limits }), rooms);

Deno.test("importSqlite() carries chat.sqlite into the log once: epochs, offsets, retained messages within the limits, message ids", async () => {
  await withTempDir(async (dir) => {
    const lastId = await writeSqlite(dir, { a: 9, b: 3, "c ü": 1, old: 2 });
    const limits = { size: 5, ttlMs: HOUR };
    const rooms = ["a", "b", "c ü"];
    const want = await sqliteAnswers(dir, limits, rooms);
    const warnings: string[] = [];
    const warn = (m: string) => warnings.push(m);
    await importSqlite({ dataDir: dir, ...limits, warn });
    const source = join(dir, DATA_FILE);
    assert.deepEqual(warnings, [
      `history: imported 3 rooms and 9 messages (message ids from msg_${
        lastId + 1
      }) from ${source} into the log; the file is now ${source}.imported`,
    ]);
    assert.ok(!exists(source));
    assert.ok(exists(`${source}.imported`));
    assert.equal(listDir(dir).snapshots.length, 1);

    const got = await logAnswers(dir, limits, rooms);
    assert.deepEqual(got, want);
    // Room "a": offsets 5..9 (size 5); 1 and 2 were past the TTL anyway.
    assert.deepEqual(
      (got.rooms.a as { messages: unknown[][] }).messages.map((m) => m[0]),
      [5, 6, 7, 8, 9],
    );

    const store = openLogStore({ dataDir: dir, ...limits, warn });
    try {
      // Silent for longer than the TTL: forgotten, as SQLite would.
      assert.equal((await store.position("old")).offset, 0);
      const [next] = store.appendSync(
        [{ room: "a", body: body("a 10"), timeMs: Date.now() }],
        lastId + 1,
      );
      assert.equal(next.offset, 10);
      assert.equal(
        next.epoch,
        (want.rooms.a as { position: { epoch: string } }).position.epoch,
      );
      assert.equal(store.lastMessageId, lastId + 1);
    } finally {
      await store.close();
    }
    await importSqlite({ dataDir: dir, ...limits, warn });
    assert.equal(warnings.length, 1, "nothing to import the second time");
    assert.equal(
      ((await logAnswers(dir, limits, ["a"])).rooms.a as {
        position: { offset: number };
      }).position.offset,
      10,
    );
  });
});

Deno.test("importSqlite() rejects a damaged chat.sqlite with StoreOpenError naming it; the file and the log stay as they were", async () => {
  await withTempDir(async (dir) => {
    const file = join(dir, DATA_FILE);
    const junk = body("this is not a database\n".repeat(200));
    await Deno.writeFile(file, junk);
    const warnings: string[] = [];
    await assert.rejects(
      importSqlite({
        dataDir: dir,
        size: 10,
        ttlMs: 0,
        warn: (m) => warnings.push(m),
      }),
      (err: Error) => {
        assert.ok(err instanceof StoreOpenError);
        assert.match(
          err.message,
          new RegExp(`data file ${file} is unreadable`),
        );
        return true;
      },
    );
    assert.deepEqual(await Deno.readFile(file), junk);
    assert.deepEqual(listDir(dir).snapshots, []);
    assert.deepEqual(warnings, []);
  });
});

Deno.test("importSqlite() leaves a chat.sqlite beside a log with history alone, with a warning", async () => {
  await withTempDir(async (dir) => {
    const limits = { size: 10, ttlMs: 0 };
    const store = openLogStore({ dataDir: dir, ...limits });
    store.appendSync([{ room: "r", body: body("log"), timeMs: Date.now() }], 1);
    await store.close();
    await writeSqlite(dir, { s: 2 });
    const before = await Deno.readFile(join(dir, DATA_FILE));
    const warnings: string[] = [];
    await importSqlite({
      dataDir: dir,
      ...limits,
      warn: (m) => warnings.push(m),
    });
    assert.equal(warnings.length, 1);
    assert.match(
      warnings[0],
      /chat\.sqlite not imported: the log in .* already holds history/,
    );
    assert.deepEqual(await Deno.readFile(join(dir, DATA_FILE)), before);
    const got = await logAnswers(dir, limits, ["r"]);
    assert.deepEqual((got.rooms.r as { messages: unknown[] }).messages, [[
      1,
      "log",
    ]]);
  });
});

const STEPS: readonly ImportStep[] = [
  "read",
  "renamed-importing",
  ...COMPACTION_STEPS,
];

Deno.test("importSqlite() killed (SIGKILL) at each step imports everything on the next start, once", async () => {
  await withTempDir(async (template) => {
    // Bodies of 300 kB: the snapshot takes several frames (turns).
    await writeSqlite(template, { a: 9, b: 4, c: 1 }, true);
    const limits = { size: 100, ttlMs: 0 };
    const rooms = ["a", "b", "c"];
    const want = await sqliteAnswers(template, limits, rooms);
    for (const step of STEPS) {
      await withTempDir(async (dir) => {
        await Deno.copyFile(join(template, DATA_FILE), join(dir, DATA_FILE));
        const out = await new Deno.Command(Deno.execPath(), {
          args: ["run", "-A", CHILD, dir, String(limits.size), step],
          stdout: "piped",
          stderr: "piped",
        }).output();
        assert.equal(out.signal, "SIGKILL", `${step}: never reached`);
        const warnings: string[] = [];
        await importSqlite({
          dataDir: dir,
          ...limits,
          warn: (m) => warnings.push(m),
        });
        assert.equal(warnings.length, 1, `${step}: ${warnings}`);
        // Once the snapshot is in place, only the last rename is left.
        const placed = STEPS.indexOf(step) >= STEPS.indexOf("snapshot-renamed");
        assert.match(
          warnings[0],
          placed
            ? /^history: finished the import of .*chat\.sqlite \(now .*chat\.sqlite\.imported\)$/
            : /^history: imported 3 rooms and 14 messages /,
          step,
        );
        const source = join(dir, DATA_FILE);
        assert.ok(!exists(source) && !exists(`${source}.importing`), step);
        assert.ok(exists(`${source}.imported`), step);
        assert.deepEqual(await logAnswers(dir, limits, rooms), want, step);
        await importSqlite({
          dataDir: dir,
          ...limits,
          warn: (m) => warnings.push(m),
        });
        assert.equal(warnings.length, 1, `${step}: imported twice`);
      });
    }
  });
});
