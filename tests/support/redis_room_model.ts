/**
 * A model of one chat room in Redis as a core sees it, for tests of the
 * room feed and the hub with a shared store: other cores' appends, restarts
 * in a new epoch, trimming to `keep`, PUB/SUB publications that may be
 * lost, and commands (the broker's position, epoch-checked reads and gap
 * fills) that run at once and answer late, in order, or fail.
 *
 * @module
 */
import type {
  HistoryStore,
  StoredMessage,
} from "../../server/rooms/history_store.ts";
import { createMemoryStore } from "../../server/store/memory_store.ts";
import { type Batch, RoomFeed } from "../../server/broker/room_feed.ts";

const enc = new TextEncoder();

/** Messages are `"<epoch>/<offset>"`, so a reader can check each one. */
export function redisRoomModel(seed: number, keep: number) {
  const random = (n: number) => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed % n;
  };
  let epoch = "e0";
  let restarts = 0;
  let last = 0;
  let stream = new Map<number, string>();
  const pubsub: Batch[] = [];
  /** Commands sent and not answered yet, in order. */
  const commands: { answer: () => void; fail: () => void }[] = [];
  let feed: RoomFeed | undefined;

  /** A command run now; its answer (or failure) reaches the core later. */
  const command = <T>(run: () => T): Promise<T> => {
    const result = run();
    return new Promise<T>((resolve, reject) => {
      commands.push({
        answer: () => resolve(result),
        fail: () => reject(new Error("broker unavailable")),
      });
    });
  };
  const position = () => ({ epoch, offset: last });
  const rows = (after: number, limit: number, ofEpoch?: string) => {
    const out: StoredMessage[] = [];
    if (ofEpoch !== undefined && ofEpoch !== epoch) return out;
    for (let o = after + 1; o <= last && out.length < limit; o++) {
      const text = stream.get(o);
      if (text !== undefined) out.push({ offset: o, body: enc.encode(text) });
    }
    return out;
  };
  /** The broker's gap fill: the position, then its epoch's first run. */
  const fill = (after: number, limit: number): Promise<Batch> =>
    command(() => {
      const now = position();
      if (now.offset < after) return { epoch: now.epoch, first: 1, bodies: [] };
      const bodies: Uint8Array[] = [];
      let first = after + 1;
      for (const m of rows(after, limit, now.epoch)) {
        if (bodies.length === 0) first = m.offset;
        else if (m.offset !== first + bodies.length) break;
        bodies.push(m.body);
      }
      return { epoch: now.epoch, first, bodies };
    });
  const memory = createMemoryStore({ size: 10, ttlMs: 0 });
  const store: HistoryStore = {
    ...memory,
    kind: "model",
    position: () => command(position),
    read: (_room, after, limit, ofEpoch) =>
      command(() => rows(after, limit, ofEpoch)),
    follow(_room, deliver) {
      return command(() => {
        const at = position();
        feed = new RoomFeed(at.epoch, at.offset, deliver, fill);
        const f = feed;
        return {
          ...at,
          stop() {
            f.close();
            if (feed === f) feed = undefined;
          },
        };
      });
    },
  };
  const publish = () => {
    const n = 1 + random(3);
    const texts: string[] = [];
    for (let i = 0; i < n; i++) {
      const t = `${epoch}/${last + 1}`;
      stream.set(++last, t);
      stream.delete(last - keep);
      texts.push(t);
    }
    if (random(10) > 0) {
      pubsub.push({
        epoch,
        first: last - n + 1,
        bodies: texts.map((t) => enc.encode(t)),
      });
    }
  };
  const restart = () => {
    epoch = `e${++restarts}`;
    last = 0;
    stream = new Map();
  };
  /** The next publication reaches the followed feed (or `to`). */
  const deliverOne = (to = feed) => {
    const b = pubsub.shift();
    if (b) to?.push(b);
  };
  const answerOne = (failing = true) => {
    const c = commands.shift();
    if (c) failing && random(12) === 0 ? c.fail() : c.answer();
  };
  return {
    store,
    fill,
    memory,
    random,
    publish,
    restart,
    deliverOne,
    answerOne,
    commands,
    pubsub,
    now: position,
    reconnect: () => feed?.catchUp(),
  };
}
