/**
 * The hub with an embedded store (memory, as the log store behaves) driven
 * at random: publishes, subscribers live, with history or resuming, sinks
 * that push back and drain, subscribers that leave and resume, both
 * slow-consumer policies, and history trimmed to a few messages. Each
 * subscription's items are checked against what was stored.
 */
import assert from "node:assert/strict";
import { ChatHub } from "./hub.ts";
import { createMemoryStore } from "../store/memory_store.ts";
import {
  type Item,
  type ModelSubscription,
  subscribeModel,
} from "../../tests/support/model_subscription.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

interface Sub extends ModelSubscription {
  /** Subscribed with history or a resume: a gap before its first message is history not kept. */
  replayed: boolean;
  since?: number;
}

Deno.test("the hub with an embedded store, at random: no offset twice, every gap counted or cut off, every subscriber ends at the room's last", async () => {
  const turn = () => new Promise((r) => setTimeout(r, 0));
  // MODEL_SEEDS=from-to runs others (e.g. 1-2000).
  const [from, to] = (Deno.env.get("MODEL_SEEDS") ?? "1-40").split("-")
    .map(Number);
  for (let seed = from; seed <= to; seed++) {
    let state = seed;
    const random = (n: number) => {
      state = (state * 1103515245 + 12345) & 0x7fffffff;
      return state % n;
    };
    const policy = seed % 2 === 0 ? "drop" : "disconnect";
    const store = createMemoryStore({ size: 4 + random(20), ttlMs: 0 });
    const hub = new ChatHub<Item>({
      queueCapacity: 3 + random(10),
      policy,
      store,
      item: (body, offset, epoch) => ({
        epoch,
        offset,
        text: dec.decode(body),
      }),
    });
    const stored = new Map<number, string>();
    let last = 0;
    let n = 0;
    const publish = () => {
      const text = `m${++n}`;
      hub.publish("r", enc.encode(text), (err, at) => {
        assert.equal(err, undefined);
        stored.set(at!.offset, text);
        last = Math.max(last, at!.offset);
      });
    };
    const subs: Sub[] = [];
    const active: Sub[] = [];
    const subscribe = (
      replay: { history?: number; epoch?: string; sinceOffset?: number },
    ) => {
      const slow = random(2) === 0;
      const sub: Sub = Object.assign(
        subscribeModel(hub, replay, slow, random, (err) => {
          throw err;
        }),
        {
          replayed: replay.history !== undefined || replay.epoch !== undefined,
          since: replay.sinceOffset,
        },
      );
      subs.push(sub);
      active.push(sub);
    };
    const moveOn = (sub: Sub) => {
      active.splice(active.indexOf(sub), 1);
      sub.leave();
      const at = sub.items.at(-1);
      if (at) subscribe({ epoch: at.epoch, sinceOffset: at.offset });
    };
    for (let step = 0; step < 300; step++) {
      const r = random(100);
      if (r < 40) publish();
      else if (r < 50 || active.length === 0) {
        const kind = random(3);
        if (kind === 0) subscribe({});
        else if (kind === 1) subscribe({ history: 1 + random(30) });
        else if (subs.length > 0) {
          // A client that was here before (or a wrong offset).
          const epoch = subs.find((x) => x.items.length > 0)?.items[0].epoch;
          if (epoch) subscribe({ epoch, sinceOffset: random(last + 3) });
        }
      } else if (r < 80) {
        for (const sub of active) if (random(2) === 0) sub.drain();
      } else if (r < 85 && active.length > 0) {
        moveOn(active[random(active.length)]);
      } else if (r < 95) await turn();
      for (const sub of active.filter((x) => x.cut)) moveOn(sub);
    }
    // Everything committed and delivered; every sink fast again.
    for (let quiet = 0, i = 0; quiet < 3 && i < 100; i++) {
      await turn();
      const cut = active.filter((x) => x.cut);
      for (const sub of cut) moveOn(sub);
      for (const sub of active) sub.drain(true);
      const before = subs.reduce((k, x) => k + x.items.length, 0);
      await turn();
      const moved = subs.reduce((k, x) => k + x.items.length, 0) !== before;
      quiet = cut.length === 0 && !moved && hub.pendingCommits === 0
        ? quiet + 1
        : 0;
    }
    const where = `seed ${seed}`;
    // The epoch of the room's messages. A room nothing was said in is
    // forgotten when its last subscriber leaves (hub.left()), so a welcome
    // before the first message may name an earlier epoch.
    const epoch = subs.flatMap((x) => x.items.slice(1))[0]?.epoch;
    for (const [k, sub] of subs.entries()) {
      const at = `${where}, subscription ${k}`;
      if (sub.items.length === 0) continue; // left before it started
      const [welcome, ...messages] = sub.items;
      assert.equal(welcome.text, undefined, at);
      let prev = sub.replayed ? undefined : welcome;
      let gaps = 0;
      for (const item of messages) {
        assert.equal(item.epoch, epoch, at);
        assert.equal(item.text, stored.get(item.offset), at);
        if (sub.since !== undefined) {
          assert.ok(item.offset > Math.min(sub.since, welcome.offset), at);
        }
        if (prev !== undefined) {
          assert.ok(item.offset > prev.offset, `${at}: ${item.offset} again`);
          gaps += item.offset - prev.offset - 1;
        }
        prev = item;
      }
      if (policy === "drop") {
        assert.ok(
          sub.dropped() >= gaps,
          `${at}: ${gaps} missed, told ${sub.dropped()}`,
        );
      } else assert.ok(gaps === 0 || sub.cut, `${at}: ${gaps} missed, not cut`);
      // (A subscriber whose queue dropped messages may have dropped the
      // last ones: it was told, and refetches them from history.)
      if (active.includes(sub) && last > 0 && sub.dropped() === 0) {
        const end = sub.items.at(-1)!.offset;
        const had = sub.items.length === 1 && sub.since !== undefined
          ? Math.max(end, Math.min(sub.since, last))
          : end;
        assert.equal(had, last, `${at}: ends behind`);
      }
    }
    for (const sub of active) sub.leave();
    store.close();
  }
});
