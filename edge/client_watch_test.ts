import assert from "node:assert/strict";
import { ClientWatch } from "./client_watch.ts";

/** A request whose `signal` reads are counted. */
function request(signal: AbortSignal): Request & { reads: number } {
  const r = { reads: 0 } as Request & { reads: number };
  Object.defineProperty(r, "signal", {
    get() {
      r.reads++;
      return signal;
    },
  });
  return r;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

Deno.test("ClientWatch.remove() of a short call never reads request.signal", async () => {
  const watch = new ClientWatch(20);
  const ctl = new AbortController();
  const req = request(ctl.signal);
  let gone = 0;
  const w = watch.add(req, () => gone++);
  await sleep(5);
  watch.remove(w);
  ctl.abort();
  await sleep(50);
  assert.equal(req.reads, 0);
  assert.equal(gone, 0);
  assert.equal(watch.pending, 0);
});

Deno.test("ClientWatch notices a lasting call's client leaving, once", async () => {
  const watch = new ClientWatch(10);
  const ctl = new AbortController();
  const req = request(ctl.signal);
  let gone = 0;
  const w = watch.add(req, () => gone++);
  await sleep(40);
  assert.equal(req.reads, 1);
  assert.equal(gone, 0);
  ctl.abort();
  ctl.abort();
  assert.equal(gone, 1);
  watch.remove(w);
  assert.equal(watch.pending, 0);
});

Deno.test("ClientWatch fires at once for a client that left before the call was watched", async () => {
  const watch = new ClientWatch(10);
  const ctl = new AbortController();
  let gone = 0;
  const w = watch.add(request(ctl.signal), () => gone++);
  ctl.abort();
  assert.equal(gone, 0);
  await sleep(40);
  assert.equal(gone, 1);
  watch.remove(w);
});

Deno.test("ClientWatch stops listening to a removed call's signal", async () => {
  const watch = new ClientWatch(10);
  const ctl = new AbortController();
  let gone = 0;
  const w = watch.add(request(ctl.signal), () => gone++);
  await sleep(40);
  watch.remove(w);
  ctl.abort();
  assert.equal(gone, 0);
});
