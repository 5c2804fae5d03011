import assert from "node:assert/strict";
import { Keepalive, type KeepaliveTarget } from "./keepalive.ts";

function target() {
  const t = {
    heard: false,
    pings: 0,
    abandoned: undefined as string | undefined,
    wantsPing: () => true,
    sendPing: () => void t.pings++,
    abandon: (message: string) => void (t.abandoned = message),
  };
  return t satisfies KeepaliveTarget;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Blocks the event loop for `ms`, as a long synchronous burst would. */
function block(ms: number): void {
  const end = performance.now() + ms;
  while (performance.now() < end) { /* busy */ }
}

Deno.test("Keepalive ends a connection whose PING goes unanswered for the timeout", async () => {
  const t = target();
  const k = new Keepalive(t, {
    keepaliveIntervalMs: 20,
    keepaliveTimeoutMs: 40,
  });
  k.start();
  await sleep(150);
  k.stop();
  assert.equal(t.pings, 1);
  assert.match(t.abandoned ?? "", /within 40 ms/);
});

Deno.test("Keepalive: a timeout tick that fired late (the event loop was blocked) waits once more, so an answer read then keeps the connection", async () => {
  const t = target();
  const k = new Keepalive(t, {
    keepaliveIntervalMs: 20,
    keepaliveTimeoutMs: 40,
  });
  k.start();
  await sleep(30); // the first tick sent its PING
  assert.equal(t.pings, 1);
  block(200); // the PING's timeout passes while nothing runs
  await sleep(0); // the late tick
  assert.equal(t.abandoned, undefined);
  t.heard = true; // the ACK, read once the loop runs again
  await sleep(60);
  k.stop();
  assert.equal(t.abandoned, undefined);
});

Deno.test("Keepalive: a tick late by more than 100 ms waits once more even when the loop was blocked for little more than the timeout", async () => {
  const t = target();
  const k = new Keepalive(t, {
    keepaliveIntervalMs: 20,
    keepaliveTimeoutMs: 400,
  });
  k.start();
  await sleep(30); // the PING went out
  assert.equal(t.pings, 1);
  block(560); // 1.4 timeouts: the tick comes ~160 ms late
  await sleep(0);
  assert.equal(t.abandoned, undefined);
  t.heard = true;
  await sleep(450);
  k.stop();
  assert.equal(t.abandoned, undefined);
});
