/**
 * `deno task bench` flags, parsed once into a frozen config.
 *
 * Defaults measure this repository's core (`server/main.ts`) and, when
 * `edge/main.ts` exists, the edge in front of it. Any other server speaking
 * chat.ChatService over h2c can be measured with `--server-cmd`, e.g. the
 * seed's Go build, with the same `{port}` convention as compare.sh.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { parseNumberFlag } from "../config/number_flag.ts";

/** Everything a run needs. */
export interface BenchConfig {
  short: boolean;
  /** Shell command with `{port}`. */
  serverCmd: string;
  /** Shell command with `{port}` and `{upstream}`, or null for no edge. */
  edgeCmd: string | null;
  /** Case names to run; empty runs all. */
  cases: string[];
  /** Override of the timed duration of timed cases, seconds. */
  duration?: number;
  outDir: string;
  pin: boolean;
  label?: string;
  help: boolean;
}

export const DEFAULT_SERVER_CMD = "deno run -A server/main.ts --port {port}";
export const DEFAULT_EDGE_CMD =
  `deno run --allow-net --allow-env edge/main.ts --port {port} --upstream {upstream}`;

/** A bad flag; main prints it with the usage and exits 2. */
export class BenchUsageError extends Error {
  override name = "BenchUsageError";
}

/** Parses flags; `edgePresent` says whether edge/main.ts exists. */
export function parseBenchArgs(
  args: string[],
  edgePresent: boolean,
): BenchConfig {
  const s = { type: "string" } as const, b = { type: "boolean" } as const;
  let v;
  try {
    v = parseArgs({
      args,
      options: {
        short: b,
        "server-cmd": s,
        "edge-cmd": s,
        "no-edge": b,
        cases: s,
        d: { type: "string", short: "d" },
        out: s,
        "no-pin": b,
        label: s,
        help: b,
      },
      strict: true,
    }).values;
  } catch (err) {
    throw new BenchUsageError((err as Error).message);
  }
  const serverCmd = v["server-cmd"] ?? DEFAULT_SERVER_CMD;
  if (!serverCmd.includes("{port}")) {
    throw new BenchUsageError("--server-cmd needs {port}");
  }
  const edgeCmd = v["no-edge"]
    ? null
    : v["edge-cmd"] ?? (edgePresent ? DEFAULT_EDGE_CMD : null);
  if (edgeCmd !== null && !edgeCmd.includes("{port}")) {
    throw new BenchUsageError("--edge-cmd needs {port}");
  }
  const duration = v.d === undefined ? undefined : parseNumberFlag(
    "-d",
    v.d,
    { min: 0.001, max: 120, integer: false },
    BenchUsageError,
  );
  return Object.freeze({
    short: Boolean(v.short),
    serverCmd,
    edgeCmd,
    cases: (v.cases ?? "").split(/[ ,]+/).filter(Boolean),
    duration,
    outDir: v.out ?? ".bench",
    pin: !v["no-pin"],
    label: v.label,
    help: Boolean(v.help),
  });
}

export const BENCH_USAGE = `usage: deno task bench [--short] [options]
Starts the server under test (pinned to CPU 0) and runs each case's load
(pinned to CPU 1) in its own process; prints a table, saves JSON.
  --short              smoke size: a few hundred ms per case (CI), no thresholds
  --cases a,b          only these cases (unary_c16_k1 unary_c64_k4 fanout_s10_p1
                       fanout_s100_p4 upload_n200k chat_n20k memory_idle10k
                       memory_idle100k memory_idle100k_room1 web_unary_c16
                       connect_unary_c16 web_stream_s10)
  -d SECONDS           timed duration of timed cases (default 5; short 0.3)
  --server-cmd CMD     server under test, with {port} (default: ${DEFAULT_SERVER_CMD})
  --edge-cmd CMD       edge, with {port} and {upstream} (default when edge/main.ts exists:
                       ${DEFAULT_EDGE_CMD})
  --no-edge            skip the edge cases
  --out DIR            where results-<date>.json goes (default .bench)
  --no-pin             do not use taskset
  --label TEXT         free text copied into the JSON`;
