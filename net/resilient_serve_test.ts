import assert from "node:assert/strict";
import { serveResilient } from "./resilient_serve.ts";

/** A stand-in for one `Deno.serve` instance. */
interface FakeServer {
  port: number;
  fail(err: Error): void;
  shutdowns: number;
}

/**
 * A `Deno.serve` whose instances the test makes fail, and whose listens
 * throw while `refusals` is above 0.
 */
function fakeServe() {
  const made: FakeServer[] = [];
  const state = { refusals: 0, listens: 0 };
  const serve = ((options: Deno.ServeTcpOptions) => {
    state.listens++;
    if (state.refusals > 0) {
      state.refusals--;
      throw new Deno.errors.AddrInUse("taken");
    }
    let reject!: (err: Error) => void;
    const finished = new Promise<void>((_, r) => reject = r);
    const port = options.port === 0 ? 4321 : options.port!;
    const fake: FakeServer = { port, fail: reject, shutdowns: 0 };
    made.push(fake);
    options.onListen?.({ hostname: "127.0.0.1", port, transport: "tcp" });
    return {
      addr: { hostname: "127.0.0.1", port, transport: "tcp" },
      finished,
      shutdown: () => {
        fake.shutdowns++;
        return Promise.resolve();
      },
    };
  }) as unknown as typeof Deno.serve;
  return { serve, made, state };
}

Deno.test("serveResilient() listens again on the same port after its accept loop fails, waiting longer while listening keeps failing, and drains every instance at shutdown", async () => {
  const { serve, made, state } = fakeServe();
  const waits: number[] = [];
  let listened = 0;
  const server = serveResilient(
    { port: 0, onListen: () => listened++ },
    () => new Response("ok"),
    (_err, ms) => waits.push(ms),
    serve,
  );
  assert.equal(server.addr.port, 4321);
  assert.equal(listened, 1);

  // The accept loop fails; the port is then taken three times in a row.
  state.refusals = 3;
  made[0].fail(new Error("Too many open files (os error 24)"));
  await new Promise((r) => setTimeout(r, 200));
  assert.deepEqual(waits, [5, 10, 20, 40]);
  assert.equal(made.length, 2);
  assert.equal(made[1].port, 4321, "the same port, not 0");
  assert.equal(listened, 1, "onListen only for the first listen");
  assert.equal(made[0].shutdowns, 1, "the failed instance drains at once");

  // It fails again soon: the waits go on from where they were.
  made[1].fail(new Error("Too many open files (os error 24)"));
  await new Promise((r) => setTimeout(r, 150));
  assert.deepEqual(waits, [5, 10, 20, 40, 80]);
  assert.equal(made.length, 3);

  // A failure pending a restart at shutdown: no listen after it.
  made[2].fail(new Error("Too many open files (os error 24)"));
  await new Promise((r) => setTimeout(r, 0));
  await server.shutdown();
  const listens = state.listens;
  await new Promise((r) => setTimeout(r, 250));
  assert.equal(state.listens, listens);
  assert.ok(made.every((m) => m.shutdowns >= 1));
});

Deno.test("serveResilient() gives up waiting no longer than a second however long listening fails", async () => {
  const { serve, made, state } = fakeServe();
  const waits: number[] = [];
  const server = serveResilient(
    { port: 0 },
    () => new Response("ok"),
    (_err, ms) => waits.push(ms),
    serve,
  );
  state.refusals = 8;
  made[0].fail(new Error("Too many open files (os error 24)"));
  // 5 + 10 + ... + 640 + 1000 ms of waits: listening at ~2.3 s.
  for (let i = 0; i < 100 && made.length < 2; i++) {
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.deepEqual(waits, [5, 10, 20, 40, 80, 160, 320, 640, 1000]);
  assert.equal(made.length, 2);
  await server.shutdown();
});
