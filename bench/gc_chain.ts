/**
 * Shows why the engine keeps calls in flight in a {@linkcode StreamTable} or
 * a {@linkcode SlotList} and not in a long-lived `Map` or `Set`: the same
 * churn (a member in per call, out when it ends, 16 in flight) through each,
 * with `--trace-gc`, and what the old generation gains per scavenge.
 *
 * A rehashed Map or Set keeps its old backing table linked to the new one,
 * entries included. Once the collection's table is in the old generation (a
 * mark-compact promotes it), every later table and its members stay
 * reachable from that dead table until the next mark-compact, so short-lived
 * members are copied and promoted by scavenges (docs/perf-log.md, "the
 * promoted calls").
 *
 * ```sh
 * deno run -A bench/gc_chain.ts
 * ```
 *
 * A measuring tool only, not part of the product.
 *
 * @module
 */
import { StreamTable } from "../http2/stream_table.ts";
import { SlotList } from "../collections/slot_list.ts";

const KINDS = ["map", "set", "stream-table", "slot-list"] as const;
type Kind = typeof KINDS[number];

interface Call {
  readonly id: number;
  slot: number;
  readonly payload: number[];
  readonly label: string;
}

/** The child: 3 s of churn through one kind of collection. */
function churn(kind: Kind): void {
  const map = new Map<number, Call>();
  const set = new Set<Call>();
  const table = new StreamTable<Call>();
  const list = new SlotList<Call>();
  const inFlight: Call[] = [];
  // The collections start in the old generation, as a connection's do once
  // a mark-compact ran during load.
  const gc = (globalThis as { gc?: () => void }).gc!;
  gc();
  gc();
  let id = 1;
  const end = Date.now() + 3000;
  const tick = () => {
    for (let i = 0; i < 2000; i++, id += 2) {
      const call: Call = {
        id,
        slot: -1,
        payload: new Array(40).fill(id),
        label: `call ${id}`,
      };
      if (kind === "map") map.set(id, call);
      else if (kind === "set") set.add(call);
      else if (kind === "stream-table") table.set(call);
      else list.add(call);
      inFlight.push(call);
      if (inFlight.length > 16) {
        const done = inFlight.shift()!;
        if (kind === "map") map.delete(done.id);
        else if (kind === "set") set.delete(done);
        else if (kind === "stream-table") table.delete(done.id);
        else list.remove(done);
      }
    }
    if (Date.now() < end) setTimeout(tick, 0);
  };
  tick();
}

/** Old-generation growth between consecutive scavenges, median, in MB. */
function growth(trace: string): { median: number; markCompacts: number } {
  const after: number[] = [];
  const kinds: string[] = [];
  const re = /(Scavenge|Mark-Compact)[^\n]*? [\d.]+ \([\d.]+\) -> ([\d.]+)/g;
  for (const m of trace.matchAll(re)) {
    kinds.push(m[1]);
    after.push(Number(m[2]));
  }
  const d: number[] = [];
  for (let i = 1; i < after.length; i++) {
    if (kinds[i] === "Scavenge" && kinds[i - 1] === "Scavenge") {
      d.push(after[i] - after[i - 1]);
    }
  }
  d.sort((a, b) => a - b);
  return {
    median: d.length > 0 ? d[d.length >> 1] : NaN,
    markCompacts: kinds.filter((k) => k !== "Scavenge").length,
  };
}

if (Deno.args[0] === "--child") {
  churn(Deno.args[1] as Kind);
} else {
  console.log("collection      MB promoted per scavenge  mark-compacts");
  for (const kind of KINDS) {
    const out = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--v8-flags=--trace-gc,--expose-gc",
        new URL(import.meta.url).pathname,
        "--child",
        kind,
      ],
      stdout: "piped",
    }).output();
    const { median, markCompacts } = growth(
      new TextDecoder().decode(out.stdout),
    );
    console.log(
      `${kind.padEnd(16)}${median.toFixed(1).padStart(8)}${
        String(markCompacts).padStart(25)
      }`,
    );
  }
}
