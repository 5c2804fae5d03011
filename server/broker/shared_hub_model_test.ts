/**
 * The hub and a room feed against a model of one room in Redis, written to
 * by other cores: appends, restarts in a new epoch, trimming, PUB/SUB that
 * loses publications, and commands answered late (in order, as on one
 * connection) or failing. Clients subscribe live, with history, or resume
 * where they were (moving between cores), at random; each subscription's
 * items are then checked against what the model stored.
 */
import assert from "node:assert/strict";
import { ChatHub } from "../rooms/hub.ts";
import { redisRoomModel } from "../../tests/support/redis_room_model.ts";
import {
  type Item,
  type ModelSubscription,
  subscribeModel,
} from "../../tests/support/model_subscription.ts";

const dec = new TextDecoder();

/** One subscription of a client, and what it asked for. */
interface Sub extends ModelSubscription {
  errored: boolean;
  resumed?: { epoch: string; since: number };
  live: boolean; // subscribed live only
}

Deno.test("the hub and a room feed against a model of Redis: no offset twice, no epoch again, every gap reported, every subscriber ends at the room's last", async () => {
  // Commands answer through promises, which a few microtask turns settle;
  // a catch-up waits a timer turn between pages.
  const settle = async (timers = false) => {
    for (let i = 0; i < 30; i++) await null;
    if (timers) await new Promise((r) => setTimeout(r, 0));
  };
  // MODEL_SEEDS=from-to runs others (e.g. 1-5000).
  const [from, to] = (Deno.env.get("MODEL_SEEDS") ?? "1-120").split("-")
    .map(Number);
  for (let seed = from; seed <= to; seed++) {
    const keep = seed % 3 === 0 ? 6 : 1_000_000;
    const m = redisRoomModel(seed, keep);
    // Odd seeds cut a subscriber off at a gap (it then resumes), even ones
    // count the gap and go on.
    const policy = seed % 2 === 0 ? "drop" : "disconnect";
    const hub = new ChatHub<Item>({
      queueCapacity: 1000,
      policy,
      store: m.store,
      item: (body, offset, epoch) => ({
        epoch,
        offset,
        text: dec.decode(body),
      }),
    });
    const subs: Sub[] = [];
    const active: Sub[] = [];
    const subscribe = (replay: {
      history?: number;
      epoch?: string;
      sinceOffset?: number;
    }) => {
      const live = replay.history === undefined && replay.epoch === undefined;
      let resumed: Sub["resumed"];
      if (replay.epoch !== undefined) {
        // What it has; a wrong client's offset past the room's last counts
        // as the last (it is to get the next messages).
        const { epoch, offset } = m.now();
        const since = replay.sinceOffset ?? 0;
        resumed = {
          epoch: replay.epoch,
          since: replay.epoch === epoch ? Math.min(since, offset) : since,
        };
      }
      // Some sinks push back now and then (the step loop drains them).
      const slow = m.random(3) === 0;
      const sub: Sub = Object.assign(
        subscribeModel(hub, replay, slow, m.random, () => sub.errored = true),
        { errored: false, live, resumed },
      );
      subs.push(sub);
      active.push(sub);
    };
    /** Leaves, and resumes where it was (or a cut-off client does). */
    const moveOn = (sub: Sub) => {
      active.splice(active.indexOf(sub), 1);
      sub.leave();
      const lastItem = sub.items.at(-1);
      if (lastItem && !sub.errored) {
        subscribe({ epoch: lastItem.epoch, sinceOffset: lastItem.offset });
      }
    };
    for (let step = 0; step < 250; step++) {
      const r = m.random(100);
      if (r < 22) m.publish();
      else if (r < 26) m.restart();
      else if (r < 50) m.deliverOne();
      else if (r < 75) m.answerOne();
      else if (r < 78) void m.reconnect();
      else if (r < 86 || active.length === 0) {
        const kind = m.random(3);
        if (kind === 0) subscribe({});
        else if (kind === 1) subscribe({ history: 1 + m.random(8) });
        else {
          // A client that saw some of the room elsewhere, or a wrong one.
          const now = m.now();
          subscribe({
            epoch: m.random(5) === 0 ? "e-stale" : now.epoch,
            sinceOffset: m.random(now.offset + 3),
          });
        }
      } else if (r < 89) {
        for (const sub of active) if (m.random(2) === 0) sub.drain();
      } else if (r < 94 && active.length > 0) {
        // A client moves to another core: leaves, resumes where it was.
        moveOn(active[m.random(active.length)]);
      }
      for (const sub of active.filter((x) => x.cut)) moveOn(sub);
      if (step % 5 === 0) await settle(step % 25 === 0);
    }
    // Drain: every publication arrives, every command is answered, and a
    // reconnect reads the stream once more.
    await settle(true);
    while (m.pubsub.length > 0) m.deliverOne();
    void m.reconnect();
    for (
      let i = 0;
      i < 500 && (m.commands.length > 0 || active.some((x) => x.cut) ||
        i < 3);
      i++
    ) {
      m.answerOne(false);
      for (const sub of active.filter((x) => x.cut)) moveOn(sub);
      for (const sub of active) sub.drain(true);
      await settle(true);
    }
    const where = `seed ${seed}`;
    assert.equal(m.commands.length, 0, where);
    const now = m.now();
    for (const [n, sub] of subs.entries()) {
      const at = `${where}, subscription ${n}`;
      if (sub.errored) continue;
      const [welcome, ...messages] = sub.items;
      assert.equal(welcome?.text, undefined, at);
      const epochs: string[] = [];
      let gaps = 0;
      let prev: Item | undefined = sub.live ? welcome : undefined;
      for (const item of messages) {
        assert.equal(item.text, `${item.epoch}/${item.offset}`, at);
        if (sub.resumed?.epoch === item.epoch) {
          assert.ok(
            item.offset > sub.resumed.since,
            `${at}: had ${item.offset}`,
          );
        }
        if (epochs.at(-1) !== item.epoch) {
          assert.ok(
            !epochs.includes(item.epoch),
            `${at}: back to ${item.epoch}`,
          );
          epochs.push(item.epoch);
          // A later epoch starts at 1 for a subscriber that was live in
          // the one before.
          if (prev !== undefined && prev.epoch !== item.epoch) {
            gaps += item.offset - 1;
          }
        } else {
          assert.ok(item.offset > prev!.offset, `${at}: ${item.offset} again`);
          gaps += item.offset - prev!.offset - 1;
        }
        prev = item;
      }
      if (policy === "drop") {
        assert.ok(
          sub.dropped() >= gaps,
          `${at}: ${gaps} missed, ${sub.dropped()} told`,
        );
      } else assert.ok(gaps === 0 || sub.cut, `${at}: ${gaps} missed, not cut`);
      if (active.includes(sub) && now.offset > 0) {
        // Where the client stands: its last message, or what it resumed
        // with (it may have had more than this core showed it).
        let lastItem = sub.items.at(-1)!;
        if (
          sub.resumed?.epoch === now.epoch && (sub.items.length === 1 ||
            (sub.resumed.epoch === lastItem.epoch &&
              sub.resumed.since > lastItem.offset))
        ) {
          lastItem = { epoch: sub.resumed.epoch, offset: sub.resumed.since };
        }
        assert.deepEqual(
          [lastItem.epoch, lastItem.offset],
          [now.epoch, now.offset],
          `${at}: ends behind`,
        );
      }
    }
    for (const sub of active) sub.leave();
    m.memory.close();
  }
});
