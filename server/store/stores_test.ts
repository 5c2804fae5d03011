import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { join } from "node:path";
import type { HistoryStore } from "../rooms/history_store.ts";
import { createMemoryStore } from "./memory_store.ts";
import { DATA_FILE, openSqliteStore, StoreOpenError } from "./sqlite_store.ts";
import { openThreadedSqliteStore } from "./sqlite_thread.ts";
import { openStore } from "./open_store.ts";
import { openLogStore } from "./log_store.ts";
import { segmentName } from "./log_files.ts";
import { withTempDir } from "../../tests/support/process.ts";
import { DEFAULT_CORE_CONFIG, resolveCoreConfig } from "../config.ts";

const body = (s: string) => new TextEncoder().encode(s);
const text = (b: Uint8Array) => new TextDecoder().decode(b);

/** The same behaviour from every store, with a clock the test moves. */
async function contract(store: HistoryStore, clock: { now: number }) {
  const p = await store.position("a");
  assert.equal(p.offset, 0);
  const appended = await store.append([
    { room: "a", body: body("a1"), timeMs: clock.now },
    { room: "b", body: body("b1"), timeMs: clock.now },
    { room: "a", body: body("a2"), timeMs: clock.now },
  ], 3);
  assert.deepEqual(appended.map((x) => x.offset), [1, 1, 2]);
  assert.equal(appended[0].epoch, p.epoch);
  assert.notEqual(appended[1].epoch, p.epoch);
  for (let i = 3; i <= 6; i++) {
    clock.now += 100;
    await store.append(
      [{ room: "a", body: body(`a${i}`), timeMs: clock.now }],
      3 + i,
    );
  }
  // Size 4: a1, a2 are gone; TTL 250 ms: a3 (200 ms old at 400) too.
  assert.deepEqual(
    (await store.read("a", 0, 10)).map((m) => [m.offset, text(m.body)]),
    [[4, "a4"], [5, "a5"], [6, "a6"]],
  );
  assert.deepEqual((await store.read("a", 4, 1)).map((m) => m.offset), [5]);
  assert.deepEqual(await store.read("nowhere", 0, 10), []);
  // Asked in the room's epoch: the same rows; in another epoch: none.
  assert.deepEqual(
    (await store.read("a", 4, 10, p.epoch)).map((m) => m.offset),
    [5, 6],
  );
  assert.deepEqual(await store.read("a", 4, 10, appended[1].epoch), []);
  assert.deepEqual(await store.read("nowhere", 0, 10, p.epoch), []);
  assert.deepEqual(await store.position("a"), { epoch: p.epoch, offset: 6 });
  assert.equal(store.lastMessageId, 9);
  const status = store.status();
  assert.equal(status.state, "ok");
  assert.equal(status.commits, 5);
  assert.ok(status.totalCommitMs >= 0);
}

Deno.test("createMemoryStore() numbers, reads and trims by size and TTL", async () => {
  const clock = { now: 1000 };
  const store = createMemoryStore({
    size: 4,
    ttlMs: 250,
    now: () => clock.now,
  });
  try {
    clock.now = 1000;
    await contract(store, clock);
  } finally {
    store.close();
  }
});

Deno.test("createMemoryStore() bounds retained bytes per room (the last message always kept) and in all (least recently written rooms lose their oldest first)", async () => {
  const store = createMemoryStore({
    size: 100,
    ttlMs: 0,
    bytes: 1000,
    maxBytes: 2000,
  });
  try {
    let id = 0;
    const put = (room: string, n: number) =>
      store.append([{ room, body: new Uint8Array(n), timeMs: 1 }], ++id);
    for (let i = 0; i < 5; i++) await put("a", 300); // a: 3, 4, 5
    for (let i = 0; i < 3; i++) await put("b", 300); // b: 1, 2, 3
    await put("c", 1500); // kept (its room's last); a, then b, trimmed
    await put("a", 100);
    await put("d", 300); // 2100 B: b, the least recently written, loses 3
    const retained: Record<string, number[]> = {};
    for (const room of ["a", "b", "c", "d"]) {
      retained[room] = (await store.read(room, 0, 100)).map((m) => m.offset);
    }
    assert.deepEqual(retained, { a: [6], b: [], c: [1], d: [1] });
    assert.deepEqual((await store.position("b")).offset, 3);
  } finally {
    store.close();
  }
});

const durable = [
  ["openSqliteStore", openSqliteStore],
  ["openLogStore", openLogStore],
] as const;

for (const [name, open] of durable) {
  Deno.test(`${name}() numbers, reads and trims by size and TTL, and keeps it all across a reopen`, async () => {
    await withTempDir(async (dataDir) => {
      const clock = { now: 1000 };
      const options = { dataDir, size: 4, ttlMs: 250, now: () => clock.now };
      const store = open(options);
      let epoch: string;
      try {
        await contract(store, clock);
        epoch = (await store.position("a")).epoch;
      } finally {
        await store.close();
      }
      const again = open(options);
      try {
        assert.equal(again.lastMessageId, 9);
        assert.deepEqual(await again.position("a"), { epoch, offset: 6 });
        assert.deepEqual(
          (await again.read("a", 0, 10)).map((m) => [m.offset, text(m.body)]),
          [[4, "a4"], [5, "a5"], [6, "a6"]],
        );
        assert.deepEqual(
          (await again.append([{
            room: "a",
            body: body("a7"),
            timeMs: clock.now,
          }], 10))
            .map((x) => x.offset),
          [7],
        );
      } finally {
        await again.close();
      }
      const third = open(options);
      try {
        assert.equal(third.lastMessageId, 10);
        assert.deepEqual(await third.position("a"), { epoch, offset: 7 });
        // A room only asked for keeps its epoch too.
        const empty = await third.position("b");
        assert.equal(empty.offset, 1);
      } finally {
        await third.close();
      }
    });
  });
}

Deno.test("openSqliteStore() trims by size in steps of size/16 and never reads past the size", async () => {
  await withTempDir(async (dataDir) => {
    const store = openSqliteStore({ dataDir, size: 32, ttlMs: 0 });
    const db = new DatabaseSync(join(dataDir, DATA_FILE));
    try {
      const rows = () =>
        (db.prepare("SELECT count(*) AS n FROM messages").get() as {
          n: number;
        }).n;
      const counts: number[] = [];
      for (let i = 1; i <= 40; i++) {
        await store.append(
          [{ room: "r", body: body(`m${i}`), timeMs: Date.now() }],
          i,
        );
        counts.push(rows());
        const read = await store.read("r", 0, 100);
        assert.deepEqual(
          read.map((m) => m.offset),
          Array.from(
            { length: Math.min(i, 32) },
            (_, k) => i - Math.min(i, 32) + k + 1,
          ),
        );
      }
      // Two rows of slack (32 / 16): a delete every second commit.
      assert.deepEqual(counts.slice(30), [
        31,
        32,
        33,
        32,
        33,
        32,
        33,
        32,
        33,
        32,
      ]);
      assert.deepEqual(
        (await store.read("r", 35, 2)).map((m) => text(m.body)),
        ["m36", "m37"],
      );
    } finally {
      db.close();
      store.close();
    }
  });
});

Deno.test("openSqliteStore() rolls a failed batch back: its offsets are handed out again, nothing half-stored", async () => {
  await withTempDir(async (dataDir) => {
    const store = openSqliteStore({ dataDir, size: 100, ttlMs: 0 });
    const other = new DatabaseSync(join(dataDir, DATA_FILE));
    try {
      await store.append([{ room: "r", body: body("1"), timeMs: 1 }], 1);
      other.exec("BEGIN EXCLUSIVE");
      await assert.rejects(
        store.append([
          { room: "r", body: body("2"), timeMs: 2 },
          { room: "new", body: body("n"), timeMs: 2 },
        ], 3),
        /database is locked/,
      );
      assert.equal(store.status().state, "down");
      other.exec("ROLLBACK");
      const ok = await store.append([
        { room: "r", body: body("2b"), timeMs: 3 },
        { room: "new", body: body("n"), timeMs: 3 },
      ], 5);
      assert.deepEqual(ok.map((x) => x.offset), [2, 1]);
      assert.deepEqual(
        (await store.read("r", 0, 10)).map((m) => text(m.body)),
        ["1", "2b"],
      );
      assert.equal(store.status().state, "ok");
      assert.equal(store.status().failedCommits, 1);
    } finally {
      other.close();
      store.close();
    }
  });
});

Deno.test("openSqliteStore() names the file when it is not a database", async () => {
  await withTempDir(async (dataDir) => {
    await Deno.writeTextFile(join(dataDir, DATA_FILE), "garbage ".repeat(100));
    assert.throws(
      () => openSqliteStore({ dataDir, size: 1, ttlMs: 0 }),
      (err: unknown) => {
        assert.ok(err instanceof StoreOpenError);
        assert.match(
          err.message,
          new RegExp(`data file ${dataDir}/${DATA_FILE} is unreadable`),
        );
        return true;
      },
    );
  });
});

Deno.test("openThreadedSqliteStore() runs the store on a worker and rejects an unreadable file with StoreOpenError", async () => {
  await withTempDir(async (dataDir) => {
    const store = await openThreadedSqliteStore({
      dataDir,
      size: 10,
      ttlMs: 0,
    });
    try {
      const a = await store.append([
        { room: "x", body: body("x1"), timeMs: 1 },
        { room: "y", body: body("y1"), timeMs: 1 },
        { room: "x", body: body("x2"), timeMs: 1 },
      ], 3);
      assert.deepEqual(a.map((m) => m.offset), [1, 1, 2]);
      assert.equal(a[0].epoch, a[2].epoch);
      assert.equal(a[0].epoch, (await store.position("x")).epoch);
      assert.deepEqual(
        (await store.read("x", 0, 10)).map((m) => text(m.body)),
        ["x1", "x2"],
      );
      assert.equal(store.lastMessageId, 3);
      // A batch of 64 KiB or more goes over by transfer, not by copy.
      const big = new Uint8Array(70_000).fill(7);
      const b = await store.append([
        { room: "x", body: big, timeMs: 1 },
        { room: "y", body: body("y2"), timeMs: 1 },
      ], 5);
      assert.deepEqual(b.map((m) => m.offset), [3, 2]);
      const [read] = await store.read("x", 2, 10);
      assert.equal(read.offset, 3);
      // The epoch goes to the worker and back.
      assert.deepEqual(
        (await store.read("x", 2, 10, a[0].epoch)).map((m) => m.offset),
        [3],
      );
      assert.deepEqual(await store.read("x", 2, 10, a[1].epoch), []);
      assert.deepEqual(read.body, new Uint8Array(70_000).fill(7));
      assert.deepEqual(
        (await store.read("y", 1, 10)).map((m) => text(m.body)),
        ["y2"],
      );
    } finally {
      await store.close();
    }
    await assert.rejects(store.read("x", 0, 1), /closed/);
    await Deno.writeTextFile(join(dataDir, DATA_FILE), "garbage ".repeat(100));
    await Deno.remove(join(dataDir, `${DATA_FILE}-wal`)).catch(() => {});
    await Deno.remove(join(dataDir, `${DATA_FILE}-shm`)).catch(() => {});
    await assert.rejects(
      openThreadedSqliteStore({ dataDir, size: 10, ttlMs: 0 }),
      StoreOpenError,
    );
  });
});

Deno.test("openStore() keeps SQLite history in the same file on one CPU (in the event loop's thread) and on several (on a worker)", async () => {
  await withTempDir(async (dataDir) => {
    const config = resolveCoreConfig({
      store: "sqlite",
      dataDir,
      historySize: 10,
      historyTtlMs: 0,
    });
    let offset = 0;
    for (const cpus of [1, 2, 1]) {
      const store = await openStore(config, cpus);
      try {
        assert.equal(store.kind, "sqlite");
        offset++;
        const [a] = await store.append(
          [{ room: "r", body: body(`m${offset}`), timeMs: Date.now() }],
          offset,
        );
        assert.equal(a.offset, offset);
        assert.deepEqual(
          (await store.read("r", 0, 10)).map((m) => text(m.body)),
          Array.from({ length: offset }, (_, i) => `m${i + 1}`),
        );
      } finally {
        await store.close();
      }
    }
    await Deno.writeTextFile(join(dataDir, DATA_FILE), "garbage ".repeat(100));
    await Deno.remove(join(dataDir, `${DATA_FILE}-wal`)).catch(() => {});
    await Deno.remove(join(dataDir, `${DATA_FILE}-shm`)).catch(() => {});
    for (const cpus of [1, 2]) {
      await assert.rejects(openStore(config, cpus), StoreOpenError);
    }
  });
});

Deno.test("every store's TTL sweep removes expired messages and forgets rooms silent for longer than the TTL", async () => {
  await withTempDir(async (dataDir) => {
    const limits = { size: 100, ttlMs: 200 };
    const stores = [
      createMemoryStore(limits),
      openSqliteStore({ dataDir, ...limits }),
      openLogStore({ dataDir: join(dataDir, "log"), ...limits }),
    ];
    try {
      const epochs = [];
      for (const store of stores) {
        for (const room of ["a", "b", "c"]) {
          await store.append(
            [{ room, body: body(room), timeMs: Date.now() }],
            1,
          );
        }
        epochs.push((await store.position("a")).epoch);
      }
      await new Promise((r) => setTimeout(r, 1300)); // one sweep (every 1 s)
      for (const [i, store] of stores.entries()) {
        const p = await store.position("a");
        assert.equal(p.offset, 0, store.kind);
        assert.notEqual(p.epoch, epochs[i], store.kind);
      }
      const db = new DatabaseSync(join(dataDir, DATA_FILE));
      const { n } = db.prepare("SELECT count(*) AS n FROM messages").get() as {
        n: number;
      };
      db.close();
      assert.equal(n, 0);
    } finally {
      for (const store of stores) await store.close();
    }
  });
});

Deno.test("openStore() opens the log store (the process's default), and rejects a damaged log with StoreOpenError", async () => {
  await withTempDir(async (dataDir) => {
    const config = resolveCoreConfig({
      store: DEFAULT_CORE_CONFIG.store,
      dataDir,
      historySize: 10,
      historyTtlMs: 0,
    });
    for (let n = 1; n <= 2; n++) {
      const store = await openStore(config);
      try {
        assert.equal(store.kind, "log");
        const [a] = await store.append(
          [{ room: "r", body: body(`m${n}`), timeMs: Date.now() }],
          n,
        );
        assert.equal(a.offset, n);
      } finally {
        await store.close();
      }
    }
    await Deno.writeTextFile(
      join(dataDir, segmentName(1)),
      "garbage ".repeat(100),
    );
    await assert.rejects(openStore(config), StoreOpenError);
  });
});

const releasing = [
  [
    "createMemoryStore",
    false,
    (_dataDir: string) => createMemoryStore({ size: 4, ttlMs: 0 }),
  ],
  [
    "openSqliteStore",
    true,
    (dataDir: string) => openSqliteStore({ dataDir, size: 4, ttlMs: 0 }),
  ],
  [
    "openThreadedSqliteStore",
    true,
    (dataDir: string) =>
      openThreadedSqliteStore({ dataDir, size: 4, ttlMs: 0 }),
  ],
  [
    "openLogStore",
    true,
    (dataDir: string) => openLogStore({ dataDir, size: 4, ttlMs: 0 }),
  ],
] as const;

for (const [name, durable, open] of releasing) {
  Deno.test(
    `${name}(): release() forgets a room that never had a message (a new epoch next time${
      durable ? ", also after a reopen" : ""
    }) and keeps a room with messages`,
    async () => {
      await withTempDir(async (dataDir) => {
        let store: HistoryStore = await open(dataDir);
        try {
          const first = await store.position("empty");
          store.release!("empty");
          const second = await store.position("empty");
          assert.equal(second.offset, 0);
          assert.notEqual(second.epoch, first.epoch);

          const kept = await store.position("kept");
          await store.append(
            [{ room: "kept", body: body("k1"), timeMs: 1 }],
            1,
          );
          store.release!("kept");
          store.release!("never asked for");
          assert.deepEqual(await store.position("kept"), {
            epoch: kept.epoch,
            offset: 1,
          });
          // Many empty rooms come and go: none of them stays.
          const was: string[] = [];
          for (let i = 0; i < 200; i++) {
            was.push((await store.position(`r${i}`)).epoch);
            store.release!(`r${i}`);
          }
          assert.notEqual((await store.position("r7")).epoch, was[7]);
          store.release!("r7");
          store.release!("empty");
          if (!durable) return;
          await store.close();
          store = await open(dataDir);
          assert.deepEqual(await store.position("kept"), {
            epoch: kept.epoch,
            offset: 1,
          });
          const third = await store.position("empty");
          assert.equal(third.offset, 0);
          assert.notEqual(third.epoch, second.epoch);
          assert.deepEqual(
            (await store.read("kept", 0, 10)).map((m) => text(m.body)),
            ["k1"],
          );
          assert.notEqual((await store.position("r150")).epoch, was[150]);
        } finally {
          await store.close();
        }
      });
    },
  );
}

const bounded = [
  [
    "createMemoryStore",
    false,
    (_dataDir: string) =>
      createMemoryStore({ size: 4, ttlMs: 0, maxRooms: 100 }),
  ],
  [
    "openSqliteStore",
    true,
    (dataDir: string) =>
      openSqliteStore({ dataDir, size: 4, ttlMs: 0, maxRooms: 100 }),
  ],
  [
    "openThreadedSqliteStore",
    true,
    (dataDir: string) =>
      openThreadedSqliteStore({ dataDir, size: 4, ttlMs: 0, maxRooms: 100 }),
  ],
  [
    "openLogStore",
    true,
    (dataDir: string) =>
      openLogStore({ dataDir, size: 4, ttlMs: 0, maxRooms: 100 }),
  ],
] as const;

for (const [name, durable, open] of bounded) {
  Deno.test(
    `${name}(): past maxRooms the least recently written rooms are forgotten (writing to endless names holds at most maxRooms)${
      durable ? ", also after a reopen" : ""
    }`,
    async () => {
      await withTempDir(async (dataDir) => {
        let store: HistoryStore = await open(dataDir);
        try {
          const epochs: string[] = [];
          for (let i = 0; i < 300; i++) {
            const [m] = await store.append([
              { room: `r${i}`, body: body(`m${i}`), timeMs: 1000 + i },
            ], i + 1);
            epochs.push(m.epoch);
          }
          // Rooms only asked for count too.
          for (let i = 0; i < 50; i++) await store.position(`asked${i}`);
          // SQLite forgets rooms in steps between turns.
          await new Promise((r) => setTimeout(r, 50));
          const kept = async () => {
            const out: number[] = [];
            for (let i = 0; i < 300; i++) {
              const p = await store.position(`r${i}`);
              if (p.offset === 1) {
                assert.equal(p.epoch, epochs[i]);
                out.push(i);
              } else store.release!(`r${i}`); // asked for just now: let go
            }
            return out;
          };
          const now = await kept();
          assert.ok(
            now.length >= 40 && now.length <= 100,
            `${now.length} kept`,
          );
          // The newest are kept: the last one written, and the others in a
          // run up to it.
          assert.equal(now.at(-1), 299);
          assert.deepEqual(now, now.map((_, i) => 300 - now.length + i));
          assert.deepEqual(
            (await store.read("r299", 0, 10)).map((m) => text(m.body)),
            ["m299"],
          );
          if (!durable) return;
          await store.close();
          store = await open(dataDir);
          assert.deepEqual(await kept(), now);
        } finally {
          await store.close();
        }
      });
    },
  );
}

for (const [name, durable, open] of bounded) {
  Deno.test(
    `${name}(): the room bound keeps a room written just now, with --history-size 0 too${
      durable ? ", and its order survives a reopen" : ""
    }`,
    async () => {
      await withTempDir(async (dataDir) => {
        const sizes = name === "openLogStore" || name === "createMemoryStore"
          ? [0, 4]
          : [4];
        for (const size of sizes) {
          const opened = size === 0
            ? (name === "openLogStore"
              ? openLogStore({
                dataDir: `${dataDir}/z`,
                size: 0,
                ttlMs: 0,
                maxRooms: 100,
              })
              : createMemoryStore({ size: 0, ttlMs: 0, maxRooms: 100 }))
            : await open(`${dataDir}/s`);
          let store: HistoryStore = opened;
          try {
            const [first] = await store.append([
              { room: "busy", body: body("b"), timeMs: 1 },
            ], 1);
            let t = 2;
            for (let i = 0; i < 90; i++) {
              await store.append([
                { room: `r${i}`, body: body("x"), timeMs: t++ },
              ], t);
            }
            // "busy" is written again: now the most recent.
            await store.append(
              [{ room: "busy", body: body("b"), timeMs: t++ }],
              t,
            );
            if (durable && size !== 0) {
              await store.close();
              store = await open(`${dataDir}/s`);
            }
            // Just over the bound: the oldest go, "busy" (written after
            // them) stays.
            for (let i = 0; i < 30; i++) {
              await store.append([
                { room: `n${i}`, body: body("y"), timeMs: t++ },
              ], t);
            }
            await new Promise((r) => setTimeout(r, 50));
            assert.equal(
              (await store.position("busy")).epoch,
              first.epoch,
              `size ${size}: busy forgotten`,
            );
            assert.equal((await store.position("r0")).offset, 0);
            // Many more, "busy" written now and then: it stays.
            for (let i = 30; i < 300; i++) {
              await store.append([
                { room: `n${i}`, body: body("y"), timeMs: t++ },
              ], t);
              if (i % 10 === 0) {
                await store.append([
                  { room: "busy", body: body("b"), timeMs: t++ },
                ], t);
              }
              if (i % 50 === 0) await new Promise((r) => setTimeout(r, 10));
            }
            await new Promise((r) => setTimeout(r, 50));
            assert.equal(
              (await store.position("busy")).epoch,
              first.epoch,
              `size ${size}: busy forgotten later`,
            );
          } finally {
            await store.close();
          }
        }
      });
    },
  );
}

for (
  const [name, open] of [
    [
      "openSqliteStore",
      (dataDir: string) => openSqliteStore({ dataDir, size: 4, ttlMs: 0 }),
    ],
    [
      "openThreadedSqliteStore",
      (dataDir: string) =>
        openThreadedSqliteStore({ dataDir, size: 4, ttlMs: 0 }),
    ],
  ] as const
) {
  Deno.test(`${name}() writes no row for a room only asked for; the room's epoch goes in with its first message`, async () => {
    await withTempDir(async (dataDir) => {
      const store: HistoryStore = await open(dataDir);
      let epoch: string;
      try {
        for (let i = 0; i < 300; i++) {
          await store.position(`r${i % 7}`);
          store.release!(`r${i % 7}`);
        }
        await store.position("waiting");
        epoch = (await store.position("room")).epoch;
        const [m] = await store.append([
          { room: "room", body: body("first"), timeMs: 5 },
        ], 1);
        assert.deepEqual(m, { offset: 1, epoch });
      } finally {
        await store.close();
      }
      const db = new DatabaseSync(join(dataDir, DATA_FILE));
      try {
        const names = db.prepare("SELECT name, epoch FROM rooms").all();
        assert.deepEqual(
          names.map((r) => ({ ...r })),
          [{ name: "room", epoch }],
        );
      } finally {
        db.close();
      }
    });
  });
}
