/**
 * Upload scenario: one UploadMessages stream of N messages; msgs/s and a
 * check that the server counted all of them.
 *
 * Like `chatload -scenario upload`, a warm-up stream of N/10 (at most 2,000)
 * runs first. Messages are encoded before the clock starts so the timed part
 * is the transfer and the server's work, not this process's encoder; writes
 * respect grpc-js backpressure.
 *
 * @module
 */
import { fromBinary } from "@bufbuild/protobuf";
import type { Buffer } from "node:buffer";
import {
  MessageSchema,
  MessageType,
  UploadResponseSchema,
} from "../../gen/chat_pb.ts";
import { round1, round4 } from "../stats.ts";
import {
  closeAll,
  connect,
  encode,
  identity,
  paths,
  writeWithBackpressure,
} from "../wire.ts";
import type { Client } from "@grpc/grpc-js";

/** Parameters of the upload scenario. */
export interface UploadOptions {
  addr: string;
  n: number;
}

function uploadOnce(client: Client, msgs: Buffer[]) {
  const t0 = performance.now();
  return new Promise<{ elapsedMs: number; count: number; success: boolean }>(
    (resolve, reject) => {
      const stream = client.makeClientStreamRequest<Buffer, Buffer>(
        paths.UploadMessages,
        identity,
        identity,
        (err, res) => {
          if (err || !res) return reject(err ?? new Error("no response"));
          const r = fromBinary(UploadResponseSchema, res);
          resolve({
            elapsedMs: performance.now() - t0,
            count: r.messageCount,
            success: r.success,
          });
        },
      );
      stream.on("error", () => {});
      (async () => {
        for (const m of msgs) await writeWithBackpressure(stream, m);
        stream.end();
      })();
    },
  );
}

/** Runs the scenario; resolves to one result row. */
export async function runUpload(
  o: UploadOptions,
): Promise<Record<string, unknown>> {
  const [client] = await connect(o.addr, 1);
  try {
    const room = `upload-${Date.now()}`;
    const make = (i: number) =>
      encode(MessageSchema, {
        id: `up_${i}`,
        user: "uploader",
        content: `upload ${i}`,
        room,
        type: MessageType.CHAT,
      });
    const wn = Math.min(2000, Math.floor(o.n / 10));
    if (wn > 0) {
      await uploadOnce(
        client,
        Array.from({ length: wn }, (_, i) => make(i)),
      );
    }
    const msgs = Array.from({ length: o.n }, (_, i) => make(i));
    const r = await uploadOnce(client, msgs);
    return {
      scenario: "upload",
      n: o.n,
      elapsed_s: round4(r.elapsedMs / 1000),
      msgs_per_s: round1(o.n / (r.elapsedMs / 1000)),
      message_count: r.count,
      success: r.success,
      count_ok: r.count === o.n,
      ops_total: o.n + wn,
      ok: r.count === o.n && r.success,
    };
  } finally {
    closeAll([client]);
  }
}
