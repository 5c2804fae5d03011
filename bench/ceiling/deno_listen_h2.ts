/**
 * The least a `chat.ChatService` server in JavaScript on `Deno.listen` can
 * do: HTTP/2 by hand (frames, HPACK decoding, flow control both ways), no
 * gRPC library, no validation, no auth, no history, no limits, one socket
 * write per connection per read. It answers chatload's four scenarios with
 * the core's own encoders and decoders:
 *
 * - SendMessage: decode the request, answer `message_id` `msg_N`, and send
 *   the message (framed once) to every subscriber of its room;
 * - SubscribeMessages: a welcome, then every message of the room;
 * - UploadMessages: decode each message and send it to its room's
 *   subscribers (as the seed does), answer the count at the end;
 * - Chat: echo every message (`frameEchoMessage`).
 *
 * With `--redis host:port` each SendMessage is answered only once Redis has
 * stored it, as the core's `--broker` does: the messages of one read are
 * appended per room with the broker's own script (server/broker/
 * redis_scripts.ts: the stream entries, the counter, the TTLs and the
 * PUBLISH) in one EVALSHA, and subscribers get messages from the room's
 * PUB/SUB channel, not from the publisher. That is the least a server on
 * this runtime does for "acknowledged means stored in Redis", over a
 * minimal RESP client (resp.ts): the ceiling for issue 15's "fan-out
 * through Redis" target. It does less than the core there: its deliveries
 * carry no offset or epoch, any number of appends may be in flight (the
 * core's commit queue has one), and UploadMessages and Chat still broadcast
 * without Redis.
 *
 * So the gap between this server and the seed's Go server is what the
 * runtime costs (Deno's TCP ops, V8, the JavaScript of the least HTTP/2),
 * and the gap between this server and the core is what our engine, grpc-js
 * and the product (history on disk, auth, limits, metrics) cost. Measured
 * beside the seed under compare.sh:
 *
 * ```sh
 * ../shared/bench/compare.sh 'deno run -A bench/ceiling/deno_listen_h2.ts --port {port}'
 * ```
 *
 * A measuring tool only (BENCHMARKS.md, "The runtime's ceiling"), not part
 * of the product: it trusts its client (no frame checks, no bounds).
 *
 * @module
 */
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import process from "node:process";
import { HpackDecoder, HpackEncoder } from "../../protocol/http2/hpack.ts";
import {
  Flag,
  FrameType,
  readUint32,
  settingsFrame,
  writeFrameHeader,
  writeUint32,
} from "../../protocol/http2/frames.ts";
import {
  ENVELOPE_HEADER_BYTES,
  readEnvelopeLength,
} from "../../protocol/envelope.ts";
import {
  SubscribeRequestSchema,
  UploadResponseSchema,
} from "../../gen/chat_pb.ts";
import {
  decodeChatPost,
  decodePost,
  decodeSendRequest,
} from "../../server/grpc/post_decoder.ts";
import { frameMessage } from "../../server/grpc/framing.ts";
import {
  encodeSendResponse,
  frameChatMessage,
  frameEchoMessage,
  welcomeMessage,
} from "../../server/grpc/messages.ts";
import {
  APPEND_SCRIPT,
  packBodies,
  roomKeys,
  roomOfChannel,
} from "../../server/broker/redis_scripts.ts";
import { decodeBatch } from "../../server/broker/room_feed.ts";
import { asText, RespConnection, RespError, type RespValue } from "./resp.ts";

const argOf = (name: string) => {
  const i = Deno.args.indexOf(name);
  return i < 0 ? undefined : Deno.args[i + 1];
};
const port = Number(argOf("--port") ?? 50051);
const redisAt = argOf("--redis");
const listener = Deno.listen({ hostname: "127.0.0.1", port });
const enc = new HpackEncoder(); // stateless (no dynamic table): blocks reusable
const RESP_HEADERS = enc.encode([[":status", "200"], [
  "content-type",
  "application/grpc",
]]);
const TRAILERS = enc.encode([["grpc-status", "0"], ["grpc-message", "OK"]]);
const NO_BYTES = new Uint8Array(0);
/** Our SETTINGS_INITIAL_WINDOW_SIZE; windows are topped up at half. */
const RECV_WINDOW = 1 << 20;

const Kind = { Send: 0, Subscribe: 1, Upload: 2, Chat: 3, Other: 4 } as const;
type Kind = typeof Kind[keyof typeof Kind];
const KINDS: Record<string, Kind> = {
  "/chat.ChatService/SendMessage": Kind.Send,
  "/chat.ChatService/SubscribeMessages": Kind.Subscribe,
  "/chat.ChatService/UploadMessages": Kind.Upload,
  "/chat.ChatService/Chat": Kind.Chat,
};

interface Stream {
  id: number;
  kind: Kind;
  /** Bytes of an envelope not yet whole. */
  partial: Uint8Array;
  /** Received since the last stream WINDOW_UPDATE. */
  received: number;
  /** What we may still send on it. */
  sendWindow: number;
  /** DATA payloads waiting for window, in order. */
  blocked: Uint8Array[];
  count: number;
  headersSent: boolean;
}

const rooms = new Map<string, Set<[Conn, Stream]>>();
const dirty = new Set<Conn>();
let lastId = 0;

class Conn {
  buf = new Uint8Array(1 << 16);
  pos = 0;
  streams = new Map<number, Stream>();
  sendWindow = 65535;
  initialWindow = 65535;
  maxFrame = 16384;
  received = 0;
  waiting = new Set<Stream>();
  dec = new HpackDecoder();
  writing = false;
  closed = false;
  constructor(readonly conn: Deno.TcpConn) {}

  frame(type: number, flags: number, id: number, payload: Uint8Array) {
    const need = this.pos + 9 + payload.length;
    if (need > this.buf.length) {
      const g = new Uint8Array(Math.max(this.buf.length * 2, need));
      g.set(this.buf.subarray(0, this.pos));
      this.buf = g;
    }
    writeFrameHeader(this.buf, this.pos, payload.length, type, flags, id);
    this.buf.set(payload, this.pos + 9);
    this.pos = need;
    dirty.add(this);
  }

  /** One gRPC message on `s`, within both send windows (else queued). */
  data(s: Stream, framed: Uint8Array) {
    if (s.blocked.length > 0 || !this.#sendNow(s, framed)) {
      s.blocked.push(framed);
      this.waiting.add(s);
    }
  }

  #sendNow(s: Stream, framed: Uint8Array): boolean {
    const n = framed.length;
    if (n > this.sendWindow || n > s.sendWindow) return false;
    this.sendWindow -= n;
    s.sendWindow -= n;
    for (let at = 0; at < n; at += this.maxFrame) {
      this.frame(
        FrameType.DATA,
        0,
        s.id,
        framed.subarray(at, Math.min(n, at + this.maxFrame)),
      );
    }
    return true;
  }

  drain() {
    for (const s of this.waiting) {
      while (s.blocked.length > 0 && this.#sendNow(s, s.blocked[0])) {
        s.blocked.shift();
      }
      if (s.blocked.length === 0) this.waiting.delete(s);
      else if (this.sendWindow === 0) return;
    }
  }

  respond(s: Stream) {
    if (s.headersSent) return;
    s.headersSent = true;
    this.frame(FrameType.HEADERS, Flag.END_HEADERS, s.id, RESP_HEADERS);
  }

  end(s: Stream, framed: Uint8Array | undefined) {
    this.respond(s);
    if (framed !== undefined) this.frame(FrameType.DATA, 0, s.id, framed);
    this.frame(
      FrameType.HEADERS,
      Flag.END_HEADERS | Flag.END_STREAM,
      s.id,
      TRAILERS,
    );
    this.streams.delete(s.id);
  }

  async flush() {
    if (this.writing) return;
    this.writing = true;
    try {
      while (this.pos > 0 && !this.closed) {
        const chunk = this.buf.slice(0, this.pos);
        this.pos = 0;
        let off = 0;
        while (off < chunk.length) {
          off += await this.conn.write(chunk.subarray(off));
        }
      }
    } catch {
      this.closed = true;
    } finally {
      this.writing = false;
    }
  }
}

function onHeaders(c: Conn, id: number, flags: number, block: Uint8Array) {
  let kind: Kind = Kind.Other;
  for (const [name, value] of c.dec.decode(block)) {
    if (name === ":path") kind = KINDS[value] ?? Kind.Other;
  }
  const s: Stream = {
    id,
    kind,
    partial: NO_BYTES,
    received: 0,
    sendWindow: c.initialWindow,
    blocked: [],
    count: 0,
    headersSent: false,
  };
  c.streams.set(id, s);
  if (kind === Kind.Chat) c.respond(s);
  if (flags & Flag.END_STREAM) onEnd(c, s);
}

function onMessage(c: Conn, s: Stream, payload: Uint8Array) {
  s.count++;
  if (s.kind === Kind.Send) {
    const req = decodeSendRequest(payload);
    const now = Date.now();
    const id = `msg_${++lastId}`;
    const framed = frameChatMessage(id, req.user, req.content, req.room, now);
    if (redis !== undefined) {
      redis.stage(req.room, { c, s, id, now, body: framed.subarray(5) });
      return;
    }
    for (const [sc, ss] of rooms.get(req.room) ?? []) sc.data(ss, framed);
    c.end(s, frameMessage(encodeSendResponse(id, now)));
  } else if (s.kind === Kind.Subscribe) {
    const req = fromBinary(SubscribeRequestSchema, payload);
    let members = rooms.get(req.room);
    if (members === undefined) rooms.set(req.room, members = new Set());
    members.add([c, s]);
    c.respond(s);
    const welcome = frameMessage(welcomeMessage(req.room, req.user));
    if (redis !== undefined) redis.welcome(req.room, () => c.data(s, welcome));
    else c.data(s, welcome);
  } else if (s.kind === Kind.Chat) {
    c.data(s, frameEchoMessage(decodeChatPost(payload)));
  } else if (s.kind === Kind.Upload) {
    // What the seed does with each: decode it, broadcast it to its room.
    const post = decodePost(payload);
    const members = rooms.get(post.room);
    if (members !== undefined) {
      const framed = frameMessage(payload);
      for (const [sc, ss] of members) sc.data(ss, framed);
    }
  }
}

function onEnd(c: Conn, s: Stream) {
  if (s.kind === Kind.Upload) {
    const answer = create(UploadResponseSchema, {
      messageCount: s.count,
      success: true,
    });
    c.end(s, frameMessage(toBinary(UploadResponseSchema, answer)));
  } else if (s.kind === Kind.Chat || s.kind === Kind.Other) {
    c.end(s, undefined);
  }
}

function onData(c: Conn, s: Stream, flags: number, pl: Uint8Array) {
  s.received += pl.length;
  if (s.received >= RECV_WINDOW / 2 && !(flags & Flag.END_STREAM)) {
    const u = new Uint8Array(4);
    writeUint32(u, 0, s.received);
    c.frame(FrameType.WINDOW_UPDATE, 0, s.id, u);
    s.received = 0;
  }
  let bytes = pl;
  if (s.partial.length > 0) {
    bytes = new Uint8Array(s.partial.length + pl.length);
    bytes.set(s.partial);
    bytes.set(pl, s.partial.length);
  }
  let at = 0;
  while (bytes.length - at >= ENVELOPE_HEADER_BYTES) {
    const len = readEnvelopeLength(bytes, at);
    const end = at + ENVELOPE_HEADER_BYTES + len;
    if (end > bytes.length) break;
    onMessage(c, s, bytes.subarray(at + ENVELOPE_HEADER_BYTES, end));
    at = end;
  }
  s.partial = at === bytes.length ? NO_BYTES : bytes.slice(at);
  if (flags & Flag.END_STREAM) onEnd(c, s);
}

function onSettings(c: Conn, pl: Uint8Array) {
  for (let at = 0; at + 6 <= pl.length; at += 6) {
    const id = (pl[at] << 8) | pl[at + 1];
    const value = readUint32(pl, at + 2);
    if (id === 4) {
      const delta = value - c.initialWindow;
      c.initialWindow = value;
      for (const s of c.streams.values()) s.sendWindow += delta;
    } else if (id === 5) c.maxFrame = value;
  }
  c.frame(FrameType.SETTINGS, Flag.ACK, 0, NO_BYTES);
  c.drain();
}

async function serve(conn: Deno.TcpConn) {
  conn.setNoDelay(true);
  const c = new Conn(conn);
  c.frame(
    FrameType.SETTINGS,
    0,
    0,
    settingsFrame([[3, 1000], [4, RECV_WINDOW]]).subarray(9),
  );
  let inBuf = new Uint8Array(1 << 16);
  let have = 0;
  let preface = false;
  let headerBlock: Uint8Array | undefined;
  let headerId = 0, headerFlags = 0;
  try {
    while (true) {
      if (have === inBuf.length) {
        const g = new Uint8Array(inBuf.length * 2);
        g.set(inBuf);
        inBuf = g;
      }
      const n = await conn.read(inBuf.subarray(have));
      if (n === null) break;
      have += n;
      let p = 0;
      if (!preface) {
        if (have < 24) continue;
        p = 24;
        preface = true;
      }
      while (have - p >= 9) {
        const len = (inBuf[p] << 16) | (inBuf[p + 1] << 8) | inBuf[p + 2];
        if (have - p < 9 + len) break;
        const type = inBuf[p + 3], flags = inBuf[p + 4];
        const id = readUint32(inBuf, p + 5) & 0x7fffffff;
        let pl = inBuf.subarray(p + 9, p + 9 + len);
        p += 9 + len;
        if (type === FrameType.DATA) {
          if (flags & Flag.PADDED) pl = pl.subarray(1, pl.length - pl[0]);
          c.received += len;
          const s = c.streams.get(id);
          if (s !== undefined) onData(c, s, flags, pl);
        } else if (type === FrameType.HEADERS) {
          let at = 0, end = pl.length;
          if (flags & Flag.PADDED) end -= pl[at++];
          if (flags & Flag.PRIORITY) at += 5;
          if (flags & Flag.END_HEADERS) {
            onHeaders(c, id, flags, pl.subarray(at, end));
          } else {
            headerBlock = pl.slice(at, end);
            headerId = id;
            headerFlags = flags;
          }
        } else if (type === FrameType.CONTINUATION && headerBlock) {
          const joined = new Uint8Array(headerBlock.length + pl.length);
          joined.set(headerBlock);
          joined.set(pl, headerBlock.length);
          headerBlock = joined;
          if (flags & Flag.END_HEADERS) {
            onHeaders(c, headerId, headerFlags, headerBlock);
            headerBlock = undefined;
          }
        } else if (type === FrameType.WINDOW_UPDATE) {
          const inc = readUint32(pl, 0) & 0x7fffffff;
          if (id === 0) c.sendWindow += inc;
          else {
            const s = c.streams.get(id);
            if (s !== undefined) s.sendWindow += inc;
          }
          c.drain();
        } else if (type === FrameType.SETTINGS) {
          if (!(flags & Flag.ACK)) onSettings(c, pl);
        } else if (type === FrameType.RST_STREAM) {
          const s = c.streams.get(id);
          if (s !== undefined) leave(c, s);
        } else if (type === FrameType.PING && !(flags & Flag.ACK)) {
          c.frame(FrameType.PING, Flag.ACK, 0, pl.slice());
        }
      }
      if (c.received >= 32768) {
        const u = new Uint8Array(4);
        writeUint32(u, 0, c.received);
        c.frame(FrameType.WINDOW_UPDATE, 0, 0, u);
        c.received = 0;
      }
      inBuf.copyWithin(0, p, have);
      have -= p;
      redis?.appendStaged();
      flushDirty();
    }
  } catch (e) {
    if (
      !(e instanceof Deno.errors.BadResource ||
        e instanceof Deno.errors.ConnectionReset)
    ) console.error(e);
  } finally {
    c.closed = true;
    for (const s of c.streams.values()) leave(c, s);
    try {
      conn.close();
    } catch { /* closed */ }
  }
}

/** One write per connection for everything this turn caused. */
function flushDirty() {
  for (const d of dirty) d.flush();
  dirty.clear();
}

interface Staged {
  c: Conn;
  s: Stream;
  id: string;
  now: number;
  body: Uint8Array;
}

/** The Redis path (`--redis`): appends, acknowledgements, PUB/SUB. */
class RedisPath {
  #staged = new Map<string, Staged[]>();
  /** Appends sent, oldest first: replies come back in this order. */
  #inFlight: Staged[][] = [];
  /** Rooms subscribed (true) or being subscribed (waiting welcomes). */
  #channels = new Map<string, true | (() => void)[]>();
  #epochs = 0;
  sha = "";
  cmd!: RespConnection;
  sub!: RespConnection;

  async open(at: string) {
    const [hostname, p] = at.split(":");
    let loaded: (v: RespValue) => void = () => {};
    this.cmd = await RespConnection.open(hostname, Number(p), (v) => {
      if (this.sha === "") return loaded(v);
      this.#replied(v);
    });
    this.sub = await RespConnection.open(hostname, Number(p), (v) => {
      this.#pushed(v);
    });
    const sha = await new Promise<RespValue>((resolve) => {
      loaded = resolve;
      this.cmd.send(["SCRIPT", "LOAD", APPEND_SCRIPT]);
    });
    this.sha = asText(sha);
  }

  stage(room: string, m: Staged) {
    let g = this.#staged.get(room);
    if (g === undefined) this.#staged.set(room, g = []);
    g.push(m);
  }

  /** One EVALSHA per room for what this read staged. */
  appendStaged() {
    if (this.#staged.size === 0) return;
    for (const [room, group] of this.#staged) {
      const k = roomKeys(room);
      this.cmd.send([
        "EVALSHA",
        this.sha,
        "3",
        k.epoch,
        k.seq,
        k.log,
        `ceil${process.pid}-${++this.#epochs}`,
        String(24 * 3600 * 1000),
        "1000",
        k.channel,
        String(group[group.length - 1].now),
        String(group.length),
        packBodies(group.map((m) => m.body)),
      ]);
      this.#inFlight.push(group);
    }
    this.#staged.clear();
  }

  #replied(v: RespValue) {
    const group = this.#inFlight.shift();
    if (group === undefined) return;
    if (v instanceof RespError) throw v;
    for (const m of group) {
      m.c.end(m.s, frameMessage(encodeSendResponse(m.id, m.now)));
    }
    flushDirty();
  }

  /** Sends the welcome once the room's channel is subscribed. */
  welcome(room: string, send: () => void) {
    const state = this.#channels.get(room);
    if (state === true) return send();
    if (state !== undefined) return void state.push(send);
    this.#channels.set(room, [send]);
    this.sub.send(["SUBSCRIBE", roomKeys(room).channel]);
  }

  #pushed(v: RespValue) {
    if (!Array.isArray(v)) return;
    const kind = asText(v[0]);
    const room = roomOfChannel(asText(v[1]));
    if (room === undefined) return;
    if (kind === "subscribe") {
      const waiting = this.#channels.get(room);
      this.#channels.set(room, true);
      if (Array.isArray(waiting)) { for (const send of waiting) send(); }
    } else if (kind === "message") {
      const members = rooms.get(room);
      if (members === undefined) return;
      for (const body of decodeBatch(v[2] as Uint8Array).bodies) {
        const framed = frameMessage(body);
        for (const [sc, ss] of members) sc.data(ss, framed);
      }
    }
    flushDirty();
  }
}

let redis: RedisPath | undefined;
if (redisAt !== undefined) {
  redis = new RedisPath();
  await redis.open(redisAt);
}

function leave(c: Conn, s: Stream) {
  c.streams.delete(s.id);
  c.waiting.delete(s);
  if (s.kind !== Kind.Subscribe) return;
  for (const [name, members] of rooms) {
    for (const m of members) if (m[1] === s) members.delete(m);
    if (members.size === 0) rooms.delete(name);
  }
}

for await (const c of listener) serve(c);
