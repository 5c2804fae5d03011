/**
 * Unary scenario: SendMessage calls/s and latency at concurrency C over K
 * connections, like `chatload -scenario unary`.
 *
 * C loops each keep one call in flight (loop i uses connection i % K). Only
 * calls that start after the warm-up and end before the stop time are
 * counted, so ramp-up and tail do not blur the rate.
 *
 * @module
 */
import { SendMessageRequestSchema } from "../../gen/chat_pb.ts";
import { formatError } from "../../client/format.ts";
import { latencyFields, round1 } from "../stats.ts";
import { closeAll, connect, encode, paths, unaryRaw } from "../wire.ts";

/** Parameters of the unary scenario. */
export interface UnaryOptions {
  addr: string;
  c: number;
  conns: number;
  durationS: number;
  warmupS: number;
}

/** Runs the scenario; resolves to one result row. */
export async function runUnary(
  o: UnaryOptions,
): Promise<Record<string, unknown>> {
  const clients = await connect(o.addr, o.conns);
  try {
    const start = performance.now();
    const measureFrom = start + o.warmupS * 1000;
    const stopAt = measureFrom + o.durationS * 1000;
    const lat: number[] = [];
    let errors = 0, all = 0;
    let firstError: string | undefined;
    const loop = async (g: number) => {
      const client = clients[g % clients.length];
      const req = encode(SendMessageRequestSchema, {
        user: `load${g}`,
        content: "hello",
        room: "unary-bench",
      });
      while (true) {
        const t0 = performance.now();
        if (t0 > stopAt) return;
        let ok = false;
        try {
          ok = (await unaryRaw(client, paths.SendMessage, req)).length > 0;
          all++;
        } catch (err) {
          firstError ??= formatError(err);
          await new Promise((r) => setTimeout(r, 1));
        }
        const t1 = performance.now();
        if (t0 >= measureFrom && t1 <= stopAt) {
          if (ok) lat.push(t1 - t0);
          else errors++;
        }
      }
    };
    await Promise.all(Array.from({ length: o.c }, (_, g) => loop(g)));
    return {
      scenario: "unary",
      ok: errors === 0 && lat.length > 0,
      c: o.c,
      conns: o.conns,
      duration_s: o.durationS,
      calls: lat.length,
      ops_total: all,
      errors,
      calls_per_s: round1(lat.length / o.durationS),
      ...latencyFields("", lat),
      ...(firstError ? { first_error: firstError } : {}),
    };
  } finally {
    closeAll(clients);
  }
}
